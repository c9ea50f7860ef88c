"""ST-LPIPS: shift-tolerant learned perceptual distance (Ghildyal & Liu, ECCV 2022).

Our own AlexNet / VGG16 trunks in the "shift_tolerant" variant of ST-LPIPS, loaded
strictly from the weight files shipped in the ``stlpips-pytorch`` wheel (trunk, blur
filters, input scaling and the per-layer linear heads all come from that file). The
package itself is never imported: its modules import torchvision, which we do not have.

What makes the trunk shift tolerant, compared with plain LPIPS:
- every strided step becomes a stride-1 max pool (or stride-1 conv) followed by an
  anti-aliasing blur with stride 2 (binomial 3×3 filter, "BlurPool");
- the blur pads by reflection, two pixels per side ("pad more"), so border content does
  not depend on where the sampling grid falls;
- AlexNet's first conv runs at stride 1, its downsampling moved into the blur.

The distance: features of both images at five layers, each unit-normalised over
channels, squared difference, a learned non-negative 1×1 conv to one channel, spatial
mean, sum over layers.
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from framecast.errors import FramecastError

Net = Literal["alex", "vgg"]

_WEIGHT_FILES: dict[str, str] = {
    "alex": "alex_shift_tolerant.pth",
    "vgg": "vgg_shift_tolerant.pth",
}
_MISSING_MESSAGE = (
    "ST-LPIPS weights not found: install stlpips-pytorch (pip install --no-deps stlpips-pytorch)"
)
# Channels of the five tapped layers; they fix the shapes of the linear heads.
_CHANNELS: dict[str, tuple[int, ...]] = {
    "alex": (64, 192, 384, 256, 256),
    "vgg": (64, 128, 256, 512, 512),
}
# Smallest input side for which the deepest blur still has more than two pixels to
# reflect (found by running every size; below it padding fails deep inside the trunk).
_MIN_SIZE: dict[str, int] = {"alex": 21, "vgg": 18}


class STLPIPSWeightsError(FramecastError):
    """The ST-LPIPS weight file is missing or does not match the network."""


def weights_path(net: Net) -> Path:
    """Path of the wheel's weight file for ``net``, found without importing the package.

    Raises :class:`STLPIPSWeightsError` if the package or the file is absent.
    """
    if net not in _WEIGHT_FILES:
        raise ValueError(f"net must be one of {sorted(_WEIGHT_FILES)}, got {net!r}")
    spec = importlib.util.find_spec("stlpips_pytorch")
    if spec is None or not spec.submodule_search_locations:
        raise STLPIPSWeightsError(_MISSING_MESSAGE)
    for location in spec.submodule_search_locations:
        path = Path(location) / "weights" / "vST0.0" / _WEIGHT_FILES[net]
        if path.is_file():
            return path
    raise STLPIPSWeightsError(_MISSING_MESSAGE)


class BlurDownsample(nn.Module):
    """Anti-aliased stride-2 downsampling: reflect pad 2, depthwise 3×3 binomial blur.

    The filter is a buffer so that strict loading checks it against the file.
    (B, C, H, W) -> (B, C, (H + 3) // 2, (W + 3) // 2).
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        taps = torch.tensor([1.0, 2.0, 1.0])
        kernel = torch.outer(taps, taps)
        kernel = kernel / kernel.sum()
        self.register_buffer("filt", kernel.expand(channels, 1, 3, 3).clone())

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(
            F.pad(x, (2, 2, 2, 2), mode="reflect"), self.filt, stride=2, groups=x.shape[1]
        )


def _sliced(layers: list[nn.Module], bounds: tuple[int, ...]) -> nn.ModuleList:
    """Split one layer list into consecutive slices; each slice ends at a tapped ReLU.

    Children keep their index in the full list as their name, which is the key layout
    of the weight files (``net.slice2.5.weight`` is layer 5 of the trunk).
    """
    slices = nn.ModuleList()
    for start, stop in zip(bounds[:-1], bounds[1:], strict=True):
        block = nn.Sequential()
        for index in range(start, stop):
            block.add_module(str(index), layers[index])
        slices.append(block)
    return slices


def _alex_trunk() -> nn.ModuleList:
    layers: list[nn.Module] = [
        nn.Conv2d(3, 64, kernel_size=11, stride=1, padding=2),
        BlurDownsample(64),
        nn.ReLU(),  # 2: tap 1
        nn.MaxPool2d(kernel_size=3, stride=1),
        BlurDownsample(64),
        nn.Conv2d(64, 192, kernel_size=5, padding=2),
        nn.ReLU(),  # 6: tap 2
        nn.MaxPool2d(kernel_size=3, stride=1),
        BlurDownsample(192),
        nn.Conv2d(192, 384, kernel_size=3, padding=1),
        nn.ReLU(),  # 10: tap 3
        nn.Conv2d(384, 256, kernel_size=3, padding=1),
        nn.ReLU(),  # 12: tap 4
        nn.Conv2d(256, 256, kernel_size=3, padding=1),
        nn.ReLU(),  # 14: tap 5
    ]
    return _sliced(layers, (0, 3, 7, 11, 13, 15))


def _vgg_trunk() -> nn.ModuleList:
    # VGG16 ("D"); each 2×2/2 max pool becomes a 2×2/1 max pool plus a blur.
    plan: list[int | str] = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M"]
    plan += [512, 512, 512]
    layers: list[nn.Module] = []
    channels = 3
    for item in plan:
        if item == "M":
            layers += [nn.MaxPool2d(kernel_size=2, stride=1), BlurDownsample(channels)]
        else:
            assert isinstance(item, int)
            layers += [nn.Conv2d(channels, item, kernel_size=3, padding=1), nn.ReLU()]
            channels = item
    # Taps after relu1_2, relu2_2, relu3_3, relu4_3, relu5_3.
    return _sliced(layers, (0, 4, 10, 18, 26, 34))


class STLPIPS(nn.Module):
    """Shift-tolerant LPIPS distance with frozen weights from the stlpips-pytorch wheel.

    ``forward(x, y)``: x, y (B, 3, H, W), or greyscale (B, 1, H, W), in [-1, 1] -> (B,)
    distances, >= 0, 0 for equal images. Differentiable with respect to the inputs (usable as a perceptual loss);
    the parameters never require grad. Needs H, W >= 21 for alex and >= 18 for vgg.
    Prefer :func:`load_stlpips`, which caches.
    """

    def __init__(self, net: Net = "alex") -> None:
        super().__init__()
        path = weights_path(net)
        self.net_name = net
        # LPIPS v0.1 input normalisation (per-channel shift and scale); values from the file.
        self.register_buffer("shift", torch.zeros(1, 3, 1, 1))
        self.register_buffer("scale", torch.ones(1, 3, 1, 1))
        self.slices = _alex_trunk() if net == "alex" else _vgg_trunk()
        self.heads = nn.ModuleList(
            nn.Conv2d(c, 1, kernel_size=1, bias=False) for c in _CHANNELS[net]
        )
        self._load(path)
        self.eval()
        self.requires_grad_(False)

    def _load(self, path: Path) -> None:
        # weights_only: a weight file must never be able to run code while loading.
        try:
            raw = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise STLPIPSWeightsError(f"cannot read ST-LPIPS weights {path}: {exc}") from exc
        state = {_our_key(key): value for key, value in raw.items()}
        try:
            self.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise STLPIPSWeightsError(
                f"ST-LPIPS weights {path} do not match the {self.net_name} network: {exc}"
            ) from exc

    def features(self, x: Tensor) -> list[Tensor]:
        """Unit-normalised features at the five taps for x (B, 3, H, W) in [-1, 1]."""
        h = (x.to(self.shift.dtype) - self.shift) / self.scale
        out = []
        for block in self.slices:
            h = block(h)
            out.append(_unit_normalise(h))
        return out

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        """Distance per image: x, y (B, C, H, W) in [-1, 1] -> (B,). C is 3 (RGB) or 1
        (greyscale, replicated to three equal channels: the grey RGB image it stands for)."""
        if x.shape != y.shape or x.ndim != 4 or x.shape[1] not in (1, 3):
            raise ValueError(
                f"expected two (B, 3, H, W) or (B, 1, H, W) tensors of one shape, got "
                f"{tuple(x.shape)} and {tuple(y.shape)}"
            )
        if x.shape[1] == 1:
            x, y = x.expand(-1, 3, -1, -1), y.expand(-1, 3, -1, -1)
        if min(x.shape[-2:]) < _MIN_SIZE[self.net_name]:
            raise ValueError(
                f"ST-LPIPS ({self.net_name}) needs images of at least "
                f"{_MIN_SIZE[self.net_name]}×{_MIN_SIZE[self.net_name]}, got {tuple(x.shape[-2:])}"
            )
        # One pass over both images: half the Python overhead, same numbers.
        feats = self.features(torch.cat([x, y]))
        total = x.new_zeros(x.shape[0], dtype=self.shift.dtype)
        for head, f in zip(self.heads, feats, strict=True):
            fx, fy = f.chunk(2)
            total = total + head((fx - fy).square()).mean(dim=(1, 2, 3))
        return total


def _unit_normalise(f: Tensor, eps: float = 1e-10) -> Tensor:
    """f / (||f||_channels + eps), as LPIPS does.

    Same values as sqrt(sum(f**2)), but vector_norm's gradient at a zero vector is 0
    where the sqrt's is NaN: an all-zero feature vector (every channel cut by a ReLU)
    must not poison the gradient of a perceptual loss.
    """
    return f / (torch.linalg.vector_norm(f, dim=1, keepdim=True) + eps)


def _our_key(key: str) -> str:
    """Map a key of the wheel's state dict to ours.

    scaling_layer.shift -> shift, net.slice2.5.weight -> slices.1.5.weight,
    lin3.model.1.weight -> heads.3.weight (index 0 of the wheel's head is a Dropout
    that has no weights and only acts in training, so our heads are the bare conv).
    """
    if key.startswith("scaling_layer."):
        return key.removeprefix("scaling_layer.")
    if key.startswith("net.slice"):
        number, _, rest = key.removeprefix("net.slice").partition(".")
        return f"slices.{int(number) - 1}.{rest}"
    if key.startswith("lin") and ".model.1." in key:
        number, _, param = key.removeprefix("lin").partition(".model.1.")
        return f"heads.{number}.{param}"
    return key


@functools.cache
def _cached(net: Net, device: torch.device) -> STLPIPS:
    # Built with the global generators' state kept: the layers' random init (overwritten by
    # the loaded weights) must not shift a training run's draws at its first validation,
    # or a run would differ from a resumed one, or from itself run second in a process.
    with torch.random.fork_rng(devices=[]):
        return STLPIPS(net).to(device)


def load_stlpips(net: Net = "alex", device: torch.device | str = "cpu") -> STLPIPS:
    """The frozen ST-LPIPS module for (net, device), built and loaded once per process.

    The instance is shared between callers: do not move it to another device or
    unfreeze it; ask for the device you need instead.
    """
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        # "cuda" and "cuda:0" would otherwise be two cache entries for one GPU.
        device = torch.device("cuda", torch.cuda.current_device())
    return _cached(net, device)


def stlpips_distance(x: Tensor, y: Tensor, net: Net = "alex") -> Tensor:
    """ST-LPIPS distance per image: x, y (B, 3 or 1, H, W) in [-1, 1] -> (B,), on x's device."""
    return load_stlpips(net, x.device)(x, y)
