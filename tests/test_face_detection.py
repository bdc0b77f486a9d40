"""Faces are found and described on real portraits; none on noise or blank images; ordering, selection, hints."""
from __future__ import annotations

import asyncio
from pathlib import Path

import cv2
import numpy as np
import pytest

from export_scripts.face_models.cache import cached_face_models
from orchestrator.face import FaceAnalyzer, NoFaceError, OnnxFaceModelRunner, faces_to_json, select_face
from orchestrator.face.geometry import transform_points
from orchestrator.face.mesh_layout import EYE_IMAGE_LEFT, EYE_IMAGE_RIGHT, MOUTH_CORNERS, NOSE_TIP
from orchestrator.face.ordering import ORDERINGS, FaceSelectionError

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
NOT_HUMAN = {"s22.jpg", "s33.jpg"}  # a monkey and a dog among the examples
PORTRAITS = sorted(p for p in (SHARED / "examples").rglob("*.jpg") if p.name not in NOT_HUMAN)


@pytest.fixture(scope="module")
def analyzer():
    return FaceAnalyzer(OnnxFaceModelRunner(cached_face_models()))


def load(path: Path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)


def detect(analyzer, image, **kwargs):
    return asyncio.run(analyzer.detect(image, **kwargs))


def inside(point, box, margin=0.0):
    return box[0] - margin <= point[0] <= box[2] + margin and box[1] - margin <= point[1] <= box[3] + margin


def eye_centres(lm):
    return [lm[[e["outer"], e["inner"], e["upper"], e["lower"]]].mean(0) for e in (EYE_IMAGE_LEFT, EYE_IMAGE_RIGHT)]


@pytest.mark.parametrize("path", PORTRAITS, ids=lambda p: p.name)
def test_portrait_face_is_found_and_described(analyzer, path):
    image = load(path)
    faces = detect(analyzer, image)
    assert faces, f"no face in {path.name}"
    face = faces[0]
    lm = face.landmarks
    width = face.box[2] - face.box[0]
    left_eye, right_eye = eye_centres(lm)
    mouth = lm[list(MOUTH_CORNERS)].mean(0)
    for point in (left_eye, right_eye, mouth, lm[NOSE_TIP]):
        assert inside(point, face.box, margin=0.05 * width)
    # the mesh agrees with the independent detector keypoints (eyes, mouth)
    for mesh_point, keypoint in ((left_eye, face.keypoints[0]), (right_eye, face.keypoints[1]),
                                 (mouth, face.keypoints[3])):
        assert np.linalg.norm(mesh_point - keypoint) < 0.12 * width
    # in the face's upright crop: eyes level, left eye left, nose between eyes and mouth, mouth below
    le, re, no, mo = transform_points(np.array([left_eye, right_eye, lm[NOSE_TIP], mouth]), face.crop.M_o2c)
    assert le[0] < 256 < re[0] and abs(le[1] - re[1]) < 0.05 * 512
    assert le[1] < no[1] < mo[1]
    assert 0.25 * 512 < (le[1] + re[1]) / 2 < 0.6 * 512  # LivePortrait framing: eyes a bit above the centre
    assert all(0.0 <= r <= 0.8 for r in face.eye_ratio) and 0.0 <= face.lip_ratio <= 0.8


@pytest.mark.parametrize("kind", ["noise", "blank"])
def test_no_face_on_noise_or_blank(analyzer, kind):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8) if kind == "noise" else np.full((480, 640, 3), 128,
                                                                                                   np.uint8)
    assert detect(analyzer, image) == []
    assert faces_to_json([]) == {"faces": []}
    with pytest.raises(NoFaceError, match="`crop_source: false` \\(CLI: `--no-crop-source`\\)"):
        asyncio.run(analyzer.source_crop(image))


def face_patch(analyzer, path: Path, size: int) -> np.ndarray:
    image = load(path)
    box = detect(analyzer, image)[0].box
    cx, cy, side = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2, 1.6 * (box[2] - box[0])
    m = np.array([[size / side, 0, size / 2 - cx * size / side], [0, size / side, size / 2 - cy * size / side]])
    return cv2.warpAffine(image, m, (size, size), borderMode=cv2.BORDER_REPLICATE)


@pytest.fixture(scope="module")
def two_faces(analyzer):
    """A big face at the top left and a smaller one lower right, on a grey canvas; their placement boxes."""
    canvas = np.full((700, 1000, 3), 90, np.uint8)
    big, small = face_patch(analyzer, PORTRAITS[0], 360), face_patch(analyzer, PORTRAITS[1], 240)
    canvas[40:400, 60:420] = big
    canvas[400:640, 650:890] = small
    return canvas, np.array([60, 40, 420, 400.0]), np.array([650, 400, 890, 640.0])


def test_every_face_found_and_ordered(analyzer, two_faces):
    canvas, big, small = two_faces
    expected_first = {"large-small": big, "small-large": small, "left-right": big, "right-left": small,
                      "top-bottom": big, "bottom-top": small}
    for order in ORDERINGS:
        faces = detect(analyzer, canvas, order=order)
        assert len(faces) == 2, order
        centre = lambda f: ((f.box[0] + f.box[2]) / 2, (f.box[1] + f.box[3]) / 2)  # noqa: E731
        assert inside(centre(faces[0]), expected_first[order]), order
        other = small if expected_first[order] is big else big
        assert inside(centre(faces[1]), other), order


def test_selection_by_index_and_hint(analyzer, two_faces):
    canvas, big, small = two_faces
    faces = detect(analyzer, canvas)
    assert select_face(faces, 1) is faces[1]
    assert select_face(faces, 0, hint=small) is faces[1]
    with pytest.raises(FaceSelectionError, match="out of range"):
        select_face(faces, 2)
    crop = asyncio.run(analyzer.source_crop(canvas, hint=small))
    assert crop.image_256.shape == (256, 256, 3) and crop.image_512.shape == (512, 512, 3)
    assert inside(transform_points(np.array([[256.0, 256.0]]), crop.M_c2o)[0], small)


def test_hint_finds_a_face_the_detector_misses(analyzer):
    """A face the detector misses (here: too small, with the window search off) is found with a box hint."""
    canvas = np.full((1600, 1600, 3), 90, np.uint8)
    canvas[700:790, 1100:1190] = face_patch(analyzer, PORTRAITS[0], 90)
    hint = np.array([1090, 690, 1200, 800.0])
    assert detect(analyzer, canvas, small_face_levels=0) == []
    faces = detect(analyzer, canvas, hint=hint, small_face_levels=0)
    assert len(faces) == 1
    assert inside(faces[0].landmarks[NOSE_TIP], hint)


def test_json_document_shape(analyzer):
    faces = detect(analyzer, load(PORTRAITS[0]))
    doc = faces_to_json(faces)
    face = doc["faces"][0]
    assert set(face) == {"box", "score", "landmarks", "eye_ratio", "lip_ratio"}
    assert len(face["box"]) == 4 and len(face["landmarks"]) == 468 and len(face["eye_ratio"]) == 2


def test_small_faces_are_found_once_each_by_the_window_search(analyzer):
    """Faces ~3.5% of a 1600 px image (too small for the detector's 128 px view of the whole image): one inside a
    window, one across the middle where half-overlapping windows meet, one in a corner. Each is found exactly once."""
    canvas = np.full((1600, 1600, 3), 90, np.uint8)
    placed = [(700, 1100), (755, 760), (12, 12)]
    for y, x in placed:
        canvas[y:y + 90, x:x + 90] = face_patch(analyzer, PORTRAITS[0], 90)
    faces = detect(analyzer, canvas)
    assert len(faces) == 3
    for y, x in placed:
        box = np.array([x, y, x + 90, y + 90.0])
        matching = [f for f in faces if inside(f.landmarks[NOSE_TIP], box)]
        assert len(matching) == 1, (x, y)
        left_eye, right_eye = eye_centres(matching[0].landmarks)
        assert left_eye[0] < matching[0].landmarks[NOSE_TIP][0] < right_eye[0]


@pytest.mark.parametrize("side", [800, 1000, 1200])
def test_a_small_face_beside_a_large_one_is_found(analyzer, side):
    """Issue 17: a 72 px face beside a 150 px one was missed, as the window search ran only when the whole image
    showed no face. A tracker following one face (``every_face=False``) still stops at the first face found."""
    canvas = np.full((side, side, 3), 90, np.uint8)
    canvas[100:340, 100:340] = face_patch(analyzer, PORTRAITS[0], 240)  # face box ~150 px (the patch is 1.6x)
    y = x = side // 2
    canvas[y:y + 115, x:x + 115] = face_patch(analyzer, PORTRAITS[1], 115)  # ~72 px
    faces = detect(analyzer, canvas)
    assert len(faces) == 2, [f.box.round() for f in faces]
    assert inside(faces[0].landmarks[NOSE_TIP], [100, 100, 340, 340])
    assert inside(faces[1].landmarks[NOSE_TIP], [x, y, x + 115, y + 115])
    assert len(detect(analyzer, canvas, every_face=False)) == 1


def test_window_search_finds_nothing_on_images_without_faces(analyzer):
    rng = np.random.default_rng(1)
    noise = rng.integers(0, 256, (1200, 1600, 3), dtype=np.uint8)
    textured = cv2.resize(rng.integers(0, 256, (60, 80, 3), dtype=np.uint8), (1600, 1200), interpolation=cv2.INTER_CUBIC)
    for image in (noise, textured):
        assert detect(analyzer, image, small_face_levels=3) == []


def test_eye_openness_is_dittos_measure_of_the_three_lid_heights_over_the_eye_width():
    """The motion generator's eye-open condition (Ditto's, on the mesh): per eye, three lid heights over the
    corner distance, in 3D (the image-left eye first)."""
    from orchestrator.face.ratios import DITTO_EYES, eye_openness

    mesh = np.zeros((468, 3))
    for (outer, inner), lids, width, height in zip(*zip(*DITTO_EYES), (30.0, 40.0), (4.0, 6.0)):
        mesh[inner] = (width, 0, 0)
        for lower, upper in lids:
            mesh[lower], mesh[upper] = (width / 2, height / 2, 1.0), (width / 2, -height / 2, 1.0)
    assert np.allclose(eye_openness(mesh), (3 * 4.0 / 30.0, 3 * 6.0 / 40.0))
    assert np.allclose(eye_openness(mesh * 3.7), eye_openness(mesh))  # any common scale


def test_eye_openness_follows_the_lids_through_a_blink(analyzer):
    """Over the frames of d0.mp4 (a blink among open eyes) the measure moves with LivePortrait's eye ratio: open eyes
    about 0.9, the blink about half of it."""
    import av

    measured = []
    with av.open(str(SHARED / "examples" / "driving" / "d0.mp4")) as container:
        for frame in container.decode(video=0):
            faces = detect(analyzer, frame.to_ndarray(format="rgb24"))
            measured.append((faces[0].eye_open, faces[0].eye_ratio))
    openness, ratios = (np.array(values) for values in zip(*measured))
    assert 0.8 < np.median(openness) < 1.1 and openness.min() < 0.6 * np.median(openness)
    assert np.corrcoef(openness.mean(axis=1), ratios.mean(axis=1))[0, 1] > 0.95
