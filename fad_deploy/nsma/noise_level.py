"""Where an image's noise level (a, b) comes from, in order of trust: the user's flags,
a camera noise profile at the given ISO, the file's own metadata (DNG NoiseProfile,
SIDD/DND noise level functions, a synth set's annotations), else a blind estimate."""
from __future__ import annotations

import math
import warnings

from ..checks import read_noise, shot_noise
from ..data.noise import NoiseParams, load_profiles, read_from_shot
from ..data.raw_io import RawImage
from ..errors import FadError, fold
from .estimate import SHOT_FLOOR, estimate_noise


def _valid(noise: NoiseParams | None) -> bool:
    return (noise is not None and math.isfinite(noise.shot) and math.isfinite(noise.read)
            and noise.shot > 0 and noise.read >= 0)


def given_noise(shot: float | None = None, read: float | None = None, iso: float | None = None,
                camera: str | None = None, profiles=None) -> tuple[NoiseParams, str] | None:
    """(a, b) from the user: ``shot``/``read`` (read defaults to UPI's regression on a), or
    ``iso`` + ``camera`` through a noise profile from ``profiles`` (default: the shipped
    camera_profiles.json). None when the user gave neither."""
    if read is not None and shot is None:
        raise FadError(f"read noise {read:g} given without the shot noise: give --shot-noise too")
    if shot is not None:
        if not (math.isfinite(shot) and shot > 0):
            raise FadError(f"shot noise a={shot:g}: needs a > 0")
        if read is None:
            read, how = float(read_from_shot(shot)), "given shot noise, read noise from UPI's regression"
        else:
            how = "given shot and read noise"
        given = NoiseParams(float(shot), float(read))
        if not _valid(given):
            raise FadError(f"noise level a={shot:g}, b={read:g}: needs a > 0 and b >= 0")
        return given, how
    if (iso is None) != (camera is None):
        raise FadError("a camera noise profile needs both --iso and --camera")
    if camera is None:
        return None
    profiles = load_profiles() if profiles is None else profiles
    if camera not in profiles:
        raise FadError(f"unknown camera {camera!r}: noise profiles exist for {fold(sorted(profiles), camera)}")
    noise, how = profiles[camera].params(float(iso)), f"camera profile {camera!r} at ISO {iso:g}"
    try:
        shot_noise.check(noise.shot), read_noise.check(noise.read)
    except ValueError:
        raise FadError(f"{how} gives a={noise.shot:g}, b={noise.read:g}: outside the levels fad-denoise takes "
                       f"(shot: {shot_noise}; read: {read_noise}); check the profile's coefficients") from None
    return noise, how


def noise_for(raw: RawImage, shot: float | None = None, read: float | None = None, iso: float | None = None,
              camera: str | None = None, profiles=None) -> tuple[NoiseParams, str]:
    """(a, b) for ``raw`` and a description of where they came from: the user's values
    (:func:`given_noise`), else the file's metadata, else :func:`estimate_noise` on the image."""
    given = given_noise(shot, read, iso, camera, profiles)
    if given is not None:
        return given
    name = raw.source or "image"
    if raw.noise is not None:
        if _valid(raw.noise):
            return raw.noise, f"noise profile in the file ({raw.format or 'metadata'})"
        warnings.warn(f"{name}: ignoring unusable noise metadata a={raw.noise.shot}, b={raw.noise.read}; "
                      "estimating the noise from the image")
    est = estimate_noise(raw.planes, name)
    floor = ": no measurable shot noise, a at the estimator's floor" if est.params.shot <= SHOT_FLOOR else ""
    return est.params, (f"estimated from the image{floor} ({est.blocks_used} of {est.blocks_total} blocks smooth "
                        "enough)")
