"""Several faces in one source image (``options.faces``, ``setup.face_drivings``): which faces are selected, how they
are pasted back into one frame, and, through the real tritonserver (tiny profile), on a composite of two example
portraits side by side: both faces animated, the rest of the image untouched, a face's own driving applied to that
face only, the faces of a frame rendered in one Triton call, the summary and the refusals."""
from __future__ import annotations

import asyncio
import re
from pathlib import Path

import av
import cv2
import grpc
import numpy as np
import pytest

from client.api import PortraitClient
from client.faces import faces_kwargs
from client.cli import main as cli
from client.templates import write_template
from load_tests.scenarios import cut_video, short_template
from orchestrator.embedded import OrchestratorProcess
from orchestrator.errors import FailedPrecondition, InvalidRequest, NoFace
from orchestrator.keypoints import Motion
from orchestrator.options import FaceSelection, animate_options
from orchestrator.pipeline.image_source import AlignedMotion
from orchestrator.pipeline.paste import PasteBack, feathered_mask, paste_faces
from orchestrator.pipeline.source import check_face_count
from orchestrator.pipeline.source import select_faces
from protos.liveportrait.v1 import portrait_animator_pb2 as pb

EXAMPLES = Path(__file__).resolve().parents[1].parent / "shared" / "examples"
BUILD = Path(__file__).resolve().parents[1] / "build" / "test"
LEFT_RIGHT = {"face_order": "left-right"}  # face 0 is the left portrait, face 1 the right one


def template(name: str, frames: int) -> pb.MotionTemplate:
    return short_template(EXAMPLES / "templates" / name, frames)


# ---- paste-back of several faces ----------------------------------------------------------------------------------

def _crop_at(x: float, y: float) -> np.ndarray:
    """crop -> image: the 512 crop scaled to 128 px with its corner at (x, y)."""
    return np.array([[0.25, 0, x], [0, 0.25, y], [0, 0, 1]], np.float32)


def _paste(image: np.ndarray, x: float, y: float) -> PasteBack:
    return PasteBack(image, _crop_at(x, y), feathered_mask())


def test_one_face_is_the_single_face_paste_back():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (200, 300, 3), np.uint8)
    crop = rng.integers(0, 256, (512, 512, 3), np.uint8)
    paste = _paste(image, 40, 30)
    assert np.array_equal(paste_faces([paste], [crop]), paste(crop))


def test_faces_are_pasted_in_order_and_overlaps_blend_the_later_over_the_earlier():
    image = np.full((200, 400, 3), 100, np.uint8)
    dark, bright = np.full((512, 512, 3), 20, np.uint8), np.full((512, 512, 3), 240, np.uint8)
    first, second, apart = _paste(image, 20, 20), _paste(image, 90, 20), _paste(image, 260, 20)
    frame = paste_faces([first, second], [dark, bright])
    assert (frame[80, 60] == 20).all(), "the first face where only it is"
    assert (frame[80, 180] == 240).all(), "the second face where only it is"
    assert (frame[80, 130] == 240).all(), "where both masks are full the later face is on top"
    edge = frame[80, 92]  # inside the first face, on the second face's feathered border
    assert 20 < edge[0] < 240, "the second face's border blends over the first face"
    assert (frame[10, 300] == 100).all() and (frame[190, 10] == 100).all(), "outside every mask: the source"
    disjoint = paste_faces([first, apart], [dark, bright])
    assert np.array_equal(disjoint[:, :200], first(dark)[:, :200])
    assert np.array_equal(disjoint[:, 200:], apart(bright)[:, 200:])


# ---- selection -----------------------------------------------------------------------------------------------------

class _Face:
    def __init__(self, x1, y1, x2, y2):
        self.box = np.array([x1, y1, x2, y2], np.float64)


FACES = [_Face(0, 0, 100, 100), _Face(200, 0, 280, 80), _Face(400, 0, 460, 60)]


def test_selection_by_all_indices_and_boxes():
    assert select_faces(FACES, FaceSelection(all=True), 8) == ([0, 1, 2], [])
    assert select_faces(FACES, FaceSelection(indices=(2, 0)), 8) == ([2, 0], [])
    assert select_faces(FACES, FaceSelection(boxes=((390, 10, 420, 30), (10, 10, 50, 50))), 8) == ([2, 0], [])
    chosen, warnings = select_faces(FACES, FaceSelection(all=True), 2)
    assert chosen == [0, 1] and "3 face(s) were found" in warnings[0] and "first 2" in warnings[0]


@pytest.mark.parametrize("faces,selection,error,names", [
    (FACES, FaceSelection(indices=(0, 3)), InvalidRequest, "indices[1] is face 3"),
    (FACES, FaceSelection(boxes=((120, 0, 180, 50),)), InvalidRequest, "boxes[0]"),
    (FACES, FaceSelection(boxes=((0, 0, 50, 50), (40, 40, 90, 90))), InvalidRequest, "boxes[1] holds face 0"),
    (FACES, FaceSelection(indices=(0, 1, 2)), InvalidRequest, "at most 2 faces"),
    ([], FaceSelection(all=True), NoFace, "no face was found"),
])
def test_bad_selections_are_refused_naming_the_face(faces, selection, error, names):
    with pytest.raises(error) as raised:
        select_faces(faces, selection, 2)
    assert names in str(raised.value)


@pytest.mark.parametrize("options,error,names", [
    (pb.AnimationOptions(faces=pb.FaceSelection(all=True), crop_source=False), InvalidRequest, "crop_source"),
    (pb.AnimationOptions(faces=pb.FaceSelection(all=True), paste_back=False), InvalidRequest, "paste_back"),
    (pb.AnimationOptions(faces=pb.FaceSelection(all=True, indices=[0])), InvalidRequest, "exactly one"),
    (pb.AnimationOptions(faces=pb.FaceSelection()), InvalidRequest, "exactly one"),
    (pb.AnimationOptions(faces=pb.FaceSelection(indices=[1, 1])), InvalidRequest, "repeats"),
    (pb.AnimationOptions(faces=pb.FaceSelection(boxes=[0, 0, 10])), InvalidRequest, "4 values"),
    (pb.AnimationOptions(faces=pb.FaceSelection(boxes=[10, 0, 0, 10])), InvalidRequest, "boxes[0]"),
    (pb.AnimationOptions(faces=pb.FaceSelection(all=True), face_index=1), InvalidRequest, "face_index"),
    (pb.AnimationOptions(faces=pb.FaceSelection(all=True), model_set=pb.ANIMAL), FailedPrecondition, "boxes"),
])
def test_face_options_are_checked(options, error, names):
    with pytest.raises(error) as raised:
        animate_options(options, pb.OutputOptions())
    assert names in str(raised.value)


def test_animal_faces_are_given_by_boxes():
    parsed = animate_options(pb.AnimationOptions(model_set=pb.ANIMAL, faces=pb.FaceSelection(boxes=[0, 0, 9, 9])),
                             pb.OutputOptions())
    assert parsed.faces.boxes == ((0.0, 0.0, 9.0, 9.0),)
    assert animate_options(pb.AnimationOptions(), pb.OutputOptions()).faces is None
    three = animate_options(pb.AnimationOptions(model_set=pb.ANIMAL, faces=pb.FaceSelection(boxes=[0, 0, 9, 9] * 3)),
                            pb.OutputOptions())
    with pytest.raises(InvalidRequest, match="at most 2 faces"):  # no detector runs, the limit still holds
        check_face_count(three.faces, max_faces=2)


def test_cli_face_flags():
    assert faces_kwargs(True, None, None, ["1=smile.jpg"]) == ({"all": True}, {1: Path("smile.jpg")})
    assert faces_kwargs(False, "0,2", None, None) == ({"indices": [0, 2]}, None)
    assert faces_kwargs(False, None, [[1, 2, 3, 4]], None) == ({"boxes": [[1, 2, 3, 4]]}, None)
    assert faces_kwargs(False, None, None, None) == (None, None)
    for bad in [(False, "0,a", None, None), (True, None, None, ["smile.jpg"]), (False, None, None, ["1=a.jpg"])]:
        with pytest.raises(ValueError):
            faces_kwargs(*bad)


# ---- a face's own driving, in the main driving's chunks --------------------------------------------------------------

class _Frames:
    """A driving of n frames whose frame i has scale i, in chunks of ``chunk``; counts the frames read."""

    def __init__(self, n: int, chunk: int):
        self.n, self.chunk, self.read = n, chunk, 0

    async def chunks(self):
        for start in range(0, self.n, self.chunk):
            k = min(self.chunk, self.n - start)
            self.read += k
            yield Motion(np.arange(start, start + k, dtype=np.float32), np.zeros((k, 3, 3), np.float32),
                         np.zeros((k, 21, 3), np.float32), np.zeros((k, 3), np.float32))


def _scales(driving, sizes: list[int]) -> list[list[float]]:
    async def take():
        aligned = AlignedMotion(driving, "face_drivings[0]")
        return [(await aligned.take(n)).scale.tolist() for n in sizes]

    return asyncio.run(take())


def test_a_shorter_face_driving_holds_its_last_frame_and_a_longer_one_is_cut():
    assert _scales(_Frames(5, 3), [4, 4]) == [[0, 1, 2, 3], [4, 4, 4, 4]]
    longer = _Frames(40, 8)
    assert _scales(longer, [3, 3]) == [[0, 1, 2], [3, 4, 5]]
    assert longer.read == 8, "frames beyond the output are not read"


# ---- through Triton --------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def server(triton_server):
    with OrchestratorProcess(triton_server.grpc_url, BUILD / "orchestrator-multi-face.log",
                             extra_args=("--max-faces", "2")) as process:
        yield process


@pytest.fixture(scope="module")
def client(server):
    with PortraitClient(server.target) as c:
        yield c


@pytest.fixture(scope="module")
def composite(tmp_path_factory) -> Path:
    """Two example portraits side by side on a textured background, far enough apart that their crops do not
    overlap (1200 x 480: not resized by the 1280 px source limit; faces of ~90 px, both found by the detector)."""
    rng = np.random.default_rng(5)
    canvas = cv2.resize(rng.integers(60, 200, (12, 30, 3), dtype=np.uint8), (1200, 480), interpolation=cv2.INTER_CUBIC)
    for x0, name in ((20, "s3.jpg"), (700, "s5.jpg")):
        portrait = cv2.imread(str(EXAMPLES / "source" / name))
        h, w = portrait.shape[:2]
        portrait = cv2.resize(portrait, (round(w * 460 / h), 460), interpolation=cv2.INTER_AREA)
        canvas[10:470, x0:x0 + portrait.shape[1]] = portrait
    path = tmp_path_factory.mktemp("multi-face") / "two.png"
    cv2.imwrite(str(path), canvas)
    return path


def _frames(path: Path) -> np.ndarray:
    with av.open(str(path)) as c:
        return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)]).astype(np.int16)


def _near(box, shape, factor: float) -> np.ndarray:
    """Pixels within ``factor`` x the box's larger side of its centre (a square)."""
    x1, y1, x2, y2 = box
    half = factor * max(x2 - x1, y2 - y1)
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]]
    return (np.abs(xx - (x1 + x2) / 2) < half) & (np.abs(yy - (y1 + y2) / 2) < half)


def _render_stats(triton_server) -> tuple[int, int]:
    """(calls, items) served by render_i420 so far."""
    import tritonclient.grpc as triton

    with triton.InferenceServerClient(triton_server.grpc_url) as t:
        stats = t.get_inference_statistics("render_i420").model_stats[0]
    return stats.inference_stats.success.count, stats.inference_count


@pytest.fixture(scope="module")
def runs(client, composite, triton_server, tmp_path_factory):
    """The animations the tests compare (lossless, crf 0): both faces on the main driving (8 frames), face 1 on a
    shorter driving of its own (3 frames), and face 1 alone on that driving; Triton's render_i420 counters around
    the first."""
    out = tmp_path_factory.mktemp("multi-face-runs")
    main, own = template("d7.pkl", 8), template("shake_face.pkl", 3)
    before = _render_stats(triton_server)
    both = client.animate(composite, main, out / "both.mp4", crf=0, faces="all", **LEFT_RIGHT)
    after = _render_stats(triton_server)
    mixed = client.animate(composite, main, out / "own.mp4", crf=0, faces=[0, 1], face_drivings={1: own},
                           **LEFT_RIGHT)
    alone = client.animate(composite, own, out / "alone.mp4", crf=0, face_index=1, **LEFT_RIGHT)
    image = cv2.cvtColor(cv2.imread(str(composite)), cv2.COLOR_BGR2RGB).astype(np.int16)
    return {"both": (both, _frames(out / "both.mp4")), "own": (mixed, _frames(out / "own.mp4")),
            "alone": (alone, _frames(out / "alone.mp4")), "image": image,
            "render": (after[0] - before[0], after[1] - before[1])}


@pytest.mark.triton
def test_both_faces_change_and_the_rest_of_the_image_does_not(runs):
    summary, frames = runs["both"]
    image = runs["image"]
    assert summary.frames == len(frames) == 8 and (summary.width, summary.height) == (1200, 480)
    boxes = [list(f.box) for f in summary.faces]
    assert [(f.index, f.driving) for f in summary.faces] == [(0, "main"), (1, "main")]
    assert boxes[0][2] < 600 < boxes[1][0], "face 0 is the left portrait, face 1 the right one"
    assert list(summary.source_face_box) == boxes[0]
    difference = np.abs(frames - image).mean(axis=(0, 3))
    for box in boxes:
        assert difference[_near(box, image.shape, 0.25)].mean() > 8, "each face is animated"
    away = ~(_near(boxes[0], image.shape, 1.5) | _near(boxes[1], image.shape, 1.5))
    assert away.sum() > 50_000
    assert difference[away].mean() < 2, "away from both faces the image is left as it was"
    assert (frames[:, away] == frames[0, away]).all(), "and does not move"


@pytest.mark.triton
def test_the_faces_of_a_frame_are_rendered_in_one_triton_call(runs):
    """8 frames x 2 faces: render_i420's batch is 8 items (the faces of 4 frames), so 2 calls, not 16 items in 1
    (over the model's max batch) nor one call per face."""
    calls, items = runs["render"]
    assert items == 2 * 8
    assert calls == 2


@pytest.mark.triton
def test_a_face_follows_its_own_driving_and_the_other_the_main_one(runs):
    both, own, alone = runs["both"][1], runs["own"][1], runs["alone"][1]
    summary = runs["own"][0]
    assert [(f.index, f.driving) for f in summary.faces] == [(0, "main"), (1, "face_drivings[0]")]
    assert summary.frames == 8, "the main driving's length"
    boxes = [list(f.box) for f in summary.faces]
    left, right = (_near(box, own.shape[1:], 0.25) for box in boxes)
    assert np.abs(own[:, left] - both[:, left]).mean() < 0.5, "face 0 still follows the main driving"
    # frame 0 of every driving reproduces the source (relative motion): the drivings part from frame 1 on
    assert np.abs(own[3:, right] - both[3:, right]).mean() > 3, "face 1 does not follow the main driving"
    assert np.abs(own[:3, right] - alone[:, right]).mean() < 0.5, "as it does when animated alone"
    assert (np.abs(own[3:, right] - own[2, right]).mean() < 0.5), "after its 3 frames face 1 holds the last one"
    assert np.abs(own[7, left] - own[2, left]).mean() > 2, "while face 0 keeps moving"


@pytest.mark.triton
@pytest.mark.parametrize("kwargs,code,names", [
    ({"faces": [0, 5]}, grpc.StatusCode.INVALID_ARGUMENT, "indices[1] is face 5"),
    ({"faces": {"boxes": [[500, 200, 580, 280]]}}, grpc.StatusCode.INVALID_ARGUMENT, "boxes[0]"),
    ({"faces": [0, 1, 0]}, grpc.StatusCode.INVALID_ARGUMENT, "repeats"),
    ({"faces": "all", "crop_source": False}, grpc.StatusCode.INVALID_ARGUMENT, "crop_source"),
    ({"faces": "all", "face_drivings": {2: EXAMPLES / "driving" / "d9.jpg"}}, grpc.StatusCode.INVALID_ARGUMENT,
     "face_drivings[0].face is 2"),
    ({"face_drivings": {0: EXAMPLES / "driving" / "d9.jpg"}}, grpc.StatusCode.INVALID_ARGUMENT, "options.faces"),
    # a faceless per-face driving image (a dog) is named (issue 17)
    ({"faces": "all", "face_drivings": {1: EXAMPLES / "source" / "s33.jpg"}}, grpc.StatusCode.FAILED_PRECONDITION,
     "no face was found in the first frame of the face_drivings[0].driving_image"),
])
def test_bad_selections_are_refused(client, composite, tmp_path, kwargs, code, names):
    with pytest.raises(grpc.RpcError) as error:
        client.animate(composite, template("d7.pkl", 2), tmp_path / "bad.mp4", **kwargs)
    assert error.value.code() == code and names in error.value.details(), error.value.details()


@pytest.mark.triton
def test_too_many_faces_and_no_face_are_refused(client, tmp_path):
    blank = tmp_path / "blank.png"
    cv2.imwrite(str(blank), np.full((300, 400, 3), 128, np.uint8))
    with pytest.raises(grpc.RpcError) as error:
        client.animate(blank, template("d7.pkl", 2), tmp_path / "bad.mp4", faces="all")
    assert error.value.code() == grpc.StatusCode.FAILED_PRECONDITION and "no face" in error.value.details()
    with pytest.raises(grpc.RpcError) as error:
        client.animate(blank, template("d7.pkl", 2), tmp_path / "bad.mp4", faces=[0, 1, 2])
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "at most 2" in error.value.details()
    assert client.health() == "SERVING"


@pytest.mark.triton
def test_cli_face_boxes_and_a_face_driving_video(server, client, composite, tmp_path, capsys):
    """--face-box per face, --face-driving with a video (the CLI extracts its motion first); the CLI prints the
    animated faces."""
    faces = client.detect(composite, ordering="left-right").faces
    assert len(faces) == 2
    main = tmp_path / "main.json"
    write_template(template("d7.pkl", 4), main)
    video = tmp_path / "d0-3.mp4"
    video.write_bytes(cut_video(EXAMPLES / "driving" / "d0.mp4", 3))
    boxes = [str(round(v)) for face in reversed(faces) for v in face.box]  # the right face first
    args = ["animate", "--server", server.target, "--source", str(composite), "--driving", str(main),
            "-o", str(tmp_path / "cli.mp4"), "--face-order", "left-right", "--face-box", *boxes[:4],
            "--face-box", *boxes[4:], "--face-driving", f"0={video}"]
    assert cli(args) == 0
    printed = capsys.readouterr().out
    assert re.search(r"faces animated \(2\): #1 \[[^]]*\] face_drivings\[0\], #0 \[[^]]*\] main", printed), printed
    assert _frames(tmp_path / "cli.mp4").shape[0] == 4
