"""Audio-driven motion (Ditto's audio-to-motion, antgroup/ditto-talkinghead): 16 kHz speech -> per-frame LivePortrait
motion at 25 fps -> driving keypoints for the renderer. Numpy only; the networks are callables, so the same math runs
around served models or in-process PyTorch ones.

* ``features``: 6480-sample windows -> audio encoder -> 5 feature frames (1024-d) per window, offline and streamed;
* ``conditions``: per-frame conditions [audio 1024 | emotion 8 | eye-open 2 | eye-ball 6 | canonical kp 63];
* ``sampler``: the DDIM sampler with classifier-free guidance around a denoiser callable;
* ``motion``: the 265-d motion vector layout, window fusion and pose smoothing;
* ``drivers``: whole-clip (offline) and streaming (online) generation of the motion sequence;
* ``stitch``: the generated motion stitched onto the source's motion -> keypoints ``x_d``.
"""
