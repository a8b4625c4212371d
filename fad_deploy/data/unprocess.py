"""Unprocessing: turn an sRGB photo into a plausible linear RGGB RAW image
(Brooks et al. 2019, "Unprocessing images for learned raw denoising").

Each camera-pipeline step is a small pure function that inverts one step of the
minimal ISP in :mod:`fad_deploy.isp.process`. Images are float arrays in [0, 1],
(H, W, 3) for RGB and (4, H/2, W/2) for packed RAW.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from ..errors import FadError

# Camera XYZ->cam matrices the random colour matrix is mixed from.
XYZ2CAMS = np.array(
    [
        [[1.0234, -0.2969, -0.2266], [-0.5625, 1.6328, -0.0469], [-0.0703, 0.2188, 0.6406]],
        [[0.4913, -0.0541, -0.0202], [-0.613, 1.3513, 0.2906], [-0.1564, 0.2151, 0.7183]],
        [[0.838, -0.263, -0.0639], [-0.2887, 1.0725, 0.2496], [-0.0627, 0.1427, 0.5438]],
        [[0.6596, -0.2079, -0.0562], [-0.4782, 1.3016, 0.1933], [-0.097, 0.1581, 0.5181]],
    ]
)
RGB2XYZ = np.array(
    [[0.4124564, 0.3575761, 0.1804375], [0.2126729, 0.7151522, 0.0721750], [0.0193339, 0.1191920, 0.9503041]]
)
GAMMA = 2.2
GAMMA_FLOOR = 1e-8  # keeps the power function's gradient finite at 0
RGB_GAIN_MEAN, RGB_GAIN_STD = 0.8, 0.1  # rgb_gain = 1 / N(mean, std)
RED_GAIN_RANGE = (1.9, 2.4)
BLUE_GAIN_RANGE = (1.5, 1.9)
HIGHLIGHT_THRESHOLD = 0.9  # gains fade out above this grey level so highlights don't clip


@dataclass(frozen=True)
class UnprocessParams:
    """What the forward ISP needs to turn the RAW back into the photo."""

    rgb2cam: np.ndarray  # (3, 3), rows sum to 1
    rgb_gain: float
    red_gain: float
    blue_gain: float

    @property
    def cam2rgb(self) -> np.ndarray:
        return np.linalg.inv(self.rgb2cam)

    def as_arrays(self) -> dict:
        """float32 arrays, with ``cam2rgb`` too: the metadata the forward ISP functions read."""
        return {k: np.asarray(v, dtype=np.float32) for k, v in {**asdict(self), "cam2rgb": self.cam2rgb}.items()}


def random_ccm(rng: np.random.Generator) -> np.ndarray:
    """Random RGB->camera matrix: convex mix of XYZ->cam matrices times sRGB->XYZ, rows normalised."""
    weights = rng.uniform(1e-8, 1.0, size=len(XYZ2CAMS))
    weights = weights / weights.sum()
    xyz2cam = np.tensordot(weights, XYZ2CAMS, axes=1)
    rgb2cam = xyz2cam @ RGB2XYZ
    return rgb2cam / rgb2cam.sum(axis=-1, keepdims=True)


def random_gains(rng: np.random.Generator) -> tuple[float, float, float]:
    """(rgb_gain, red_gain, blue_gain) for digital and white-balance gains."""
    rgb_gain = 1.0 / rng.normal(RGB_GAIN_MEAN, RGB_GAIN_STD)
    red_gain = rng.uniform(*RED_GAIN_RANGE)
    blue_gain = rng.uniform(*BLUE_GAIN_RANGE)
    return float(rgb_gain), float(red_gain), float(blue_gain)


def random_params(rng: np.random.Generator) -> UnprocessParams:
    rgb_gain, red_gain, blue_gain = random_gains(rng)
    return UnprocessParams(random_ccm(rng), rgb_gain, red_gain, blue_gain)


def inverse_smoothstep(x: np.ndarray) -> np.ndarray:
    """Invert the smoothstep tone curve 3x^2 - 2x^3."""
    x = np.clip(x, 0.0, 1.0)
    return 0.5 - np.sin(np.arcsin(1.0 - 2.0 * x) / 3.0)


def gamma_expansion(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, GAMMA_FLOOR) ** GAMMA


def apply_ccm(image: np.ndarray, ccm: np.ndarray) -> np.ndarray:
    """Multiply each pixel of an (H, W, 3) image by a 3x3 colour matrix."""
    return image @ np.asarray(ccm).T


def safe_invert_gains(image: np.ndarray, rgb_gain: float, red_gain: float, blue_gain: float) -> np.ndarray:
    """Divide out white-balance and digital gains, sparing highlights so they don't clip."""
    gains = np.array([1.0 / red_gain, 1.0, 1.0 / blue_gain]) / rgb_gain
    gray = image.mean(axis=-1, keepdims=True)
    mask = (np.maximum(gray - HIGHLIGHT_THRESHOLD, 0.0) / (1.0 - HIGHLIGHT_THRESHOLD)) ** 2
    safe_gains = np.maximum(mask + (1.0 - mask) * gains, gains)
    return image * safe_gains


def mosaic(image: np.ndarray) -> np.ndarray:
    """(H, W, 3) linear camera RGB -> packed RGGB (4, H/2, W/2)."""
    r, g, b = image[..., 0], image[..., 1], image[..., 2]
    return np.stack([r[0::2, 0::2], g[0::2, 1::2], g[1::2, 0::2], b[1::2, 1::2]], axis=0)


def check_rgb(image: np.ndarray, name: str = "image") -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[-1] != 3:
        raise FadError(f"{name}: expected an RGB image of shape (H, W, 3), got {image.shape}")
    if not np.issubdtype(image.dtype, np.floating):
        raise FadError(f"{name}: expected float values in [0, 1], got dtype {image.dtype}")
    if not np.isfinite(image).all():
        raise FadError(f"{name}: contains NaN or Inf")
    if image.min() < 0 or image.max() > 1:
        raise FadError(f"{name}: values outside [0, 1] (min {image.min():.3g}, max {image.max():.3g})")
    if image.shape[0] % 2 or image.shape[1] % 2:
        raise FadError(f"{name}: size {image.shape[0]}x{image.shape[1]} is odd; a Bayer mosaic needs even sizes")
    return image


def unprocess(image: np.ndarray, params: UnprocessParams) -> np.ndarray:
    """sRGB photo (H, W, 3) in [0, 1] -> packed linear RGGB RAW (4, H/2, W/2) in [0, 1]."""
    image = check_rgb(image)
    x = inverse_smoothstep(image)
    x = gamma_expansion(x)
    x = apply_ccm(x, params.rgb2cam)
    x = safe_invert_gains(x, params.rgb_gain, params.red_gain, params.blue_gain)
    x = np.clip(x, 0.0, 1.0)
    return mosaic(x).astype(np.float32)

