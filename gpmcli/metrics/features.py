"""Feature pipelines: uint8 images -> feature vectors, with an id that names everything that changes the numbers.

``inception``: the FID Inception-v3 (2048-d pool3). Images are tiled to RGB, resized to 299x299 and scaled to [-1, 1]:
  - ``tf1`` (default; TTUR / torch-fidelity convention): TF1 bilinear resize of the 0..255 values, then (x - 128) / 128;
  - ``torch-bilinear`` (pytorch-fid convention): x / 255, ``F.interpolate`` bilinear, then 2x - 1.
  The weights are never bundled: a local file (pytorch-fid's ``pt_inception-2015-12-05-6726825d.pth`` or
  torch-fidelity's ``weights-inception-2015-12-05-6726825d.pth``) or ``hf:ORG/NAME[@REV]/FILE``.
``lenet``: the MNIST LeNet-5 84-d f6 activations ("FD-LeNet"), grayscale in [0, 1] resized bilinearly to 32x32.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F

from gpmcli.errors import DownloadError, UsageError
from gpmcli.metrics.resize import RESIZE_MODES, resize

FEATURES = ("inception", "lenet")
INCEPTION_ENV = "GPM_INCEPTION_WEIGHTS"
INCEPTION_HINT = ("the FID Inception-v3 weights are not bundled: pass --inception-weights PATH|hf:ORG/NAME[@REV]/FILE "
                  f"(or set {INCEPTION_ENV}); pytorch-fid's file is pt_inception-2015-12-05-6726825d.pth from "
                  "github.com/mseitzer/pytorch-fid/releases (v0.1.0)")
LENET_BUNDLE = "mnist-lenet"
LENET_HINT = ("LeNet features need the mnist-lenet checkpoint, which is not in checkpoints/registry.toml: pass "
              "--lenet-weights PATH (a gpm checkpoint folder, or csinva's lenet_epoch=12_test_acc=0.991.pth from "
              "github.com/csinva/gan-vae-pretrained-pytorch, mnist_classifier/weights/)")


def _hf_file(ref: str) -> Path:
    """``hf:ORG/NAME[@REV]/PATH/IN/REPO`` -> a cached local file."""
    body = ref[3:]
    parts = body.split("/")
    if len(parts) < 3:
        raise UsageError(f"{ref}: expected hf:ORG/NAME[@REV]/FILE")
    org, name, filename = parts[0], parts[1], "/".join(parts[2:])
    rev = None
    if "@" in name:
        name, rev = name.split("@", 1)
    try:
        from huggingface_hub import hf_hub_download

        return Path(hf_hub_download(repo_id=f"{org}/{name}", filename=filename, revision=rev))
    except Exception as e:  # huggingface_hub raises many types (offline, not found, HTTP)
        raise DownloadError(f"{ref}: download failed ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})"
                            ) from None


def resolve_weights_file(ref: str | os.PathLike | None) -> Path:
    ref = ref or os.environ.get(INCEPTION_ENV)
    if not ref:  # pytorch-fid's file from its public release, fetched once into gpm's cache
        from gpmcli.metrics.weights import default_inception_weights

        return default_inception_weights()
    ref = str(ref)
    if ref.startswith("hf:"):
        return _hf_file(ref)
    p = Path(ref).expanduser()
    if not p.is_file():
        raise UsageError(f"Inception weights not found: {p}")
    return p


class Pipeline:
    """Maps uint8 (B, C, H, W) image batches to (B, dim) float32 features on ``device``."""

    id: str
    dim: int
    weights_sha256: str
    weights_ref: str

    def __init__(self, device=None):
        self.device = torch.device(device) if device is not None else torch.device(
            "cuda" if torch.cuda.is_available() else "cpu")

    def describe(self) -> dict:
        return {"pipeline": self.id, "dim": self.dim, "weights": self.weights_ref, "weights_sha256": self.weights_sha256}

    @torch.inference_mode()
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        images = images.to(self.device, non_blocking=True)
        if self.device.type == "cuda":  # full float32 convolutions: TF32 would move features by ~1e-3
            with torch.backends.cudnn.flags(enabled=True, benchmark=True, deterministic=False, allow_tf32=False):
                return self.forward(images)
        return self.forward(images)

    def forward(self, images: torch.Tensor) -> torch.Tensor:  # pragma: no cover - interface
        raise NotImplementedError


def inception_preprocess(images: torch.Tensor, resize_mode: str = "tf1") -> torch.Tensor:
    """uint8 (B, 1|3, H, W) -> float (B, 3, 299, 299) in [-1, 1] with the given resize convention."""
    if images.shape[1] == 1:
        images = images.expand(-1, 3, -1, -1)
    elif images.shape[1] != 3:
        raise UsageError(f"Inception features need 1 or 3 channels, got {images.shape[1]}")
    x = images.float()
    if resize_mode == "tf1":
        return (resize(x, (299, 299), "tf1") - 128.0) / 128.0
    return 2.0 * resize(x / 255.0, (299, 299), "torch-bilinear") - 1.0


class InceptionPipeline(Pipeline):
    dim = 2048

    def __init__(self, weights=None, resize_mode: str = "tf1", device=None, fuse: bool = True, state_dict=None):
        from gpmcli.checkpoint import sha256_file
        from gpmcli.nets.inception import InceptionV3FID
        from gpmcli.safeload import load_weights, state_dict_of

        super().__init__(device)
        if resize_mode not in RESIZE_MODES:
            raise UsageError(f"--resize must be one of {', '.join(RESIZE_MODES)}, not {resize_mode!r}")
        self.resize_mode = resize_mode
        self.id = f"inception-v3-fid/pool3/{resize_mode}"
        net = InceptionV3FID()
        if state_dict is None:
            path = resolve_weights_file(weights)
            self.weights_ref = str(weights or os.environ.get(INCEPTION_ENV) or path.name)
            self.weights_sha256 = sha256_file(path)
            state_dict = state_dict_of(load_weights(path))
        else:  # in-memory weights (tests): hash the tensors so the tag still tells weight sets apart
            import hashlib

            h = hashlib.sha256()
            for k in sorted(state_dict):
                h.update(k.encode())
                h.update(state_dict[k].detach().cpu().contiguous().numpy().tobytes())
            self.weights_ref, self.weights_sha256 = "<state dict>", h.hexdigest()
        try:
            net.load_fid_state_dict(state_dict)
        except ValueError as e:
            raise UsageError(f"{self.weights_ref}: {e}") from None
        net.eval().to(self.device)
        if fuse:
            net.fuse()
        if self.device.type == "cpu":
            net = net.to(memory_format=torch.channels_last)
        self.net = net

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        return inception_preprocess(images, self.resize_mode)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.preprocess(images)
        if self.device.type == "cpu":
            x = x.contiguous(memory_format=torch.channels_last)
        return self.net(x).float()


def _lenet_module(weights=None, device="cpu"):
    """(module, ref, sha256) for LeNet features: a checkpoint ref, a csinva .pth file, or the registry bundle."""
    from gpmcli.checkpoint import sha256_file
    from gpmcli.nets.lenet import LeNet5
    from gpmcli.refs import parse_ref
    from gpmcli.registry import Registry
    from gpmcli.safeload import load_weights, state_dict_of

    if weights is None:
        reg = Registry.load()
        if LENET_BUNDLE not in reg.bundles:
            raise UsageError(LENET_HINT)
        comp = parse_ref(LENET_BUNDLE, registry=reg).component(None, device=device)
        return comp.module, LENET_BUNDLE, comp.sha256 or ""
    p = Path(str(weights))
    if p.is_file():
        net = LeNet5()
        try:
            net.load_state_dict(state_dict_of(load_weights(p)))
        except RuntimeError as e:
            raise UsageError(f"{p}: not LeNet-5 weights ({str(e).splitlines()[0]})") from None
        return net, str(p), sha256_file(p)
    comp = parse_ref(str(weights)).component(None, device=device)
    if not hasattr(comp.module, "features"):
        raise UsageError(f"{weights}: network has no features() method")
    return comp.module, str(weights), comp.sha256 or ""


class LeNetPipeline(Pipeline):
    dim = 84
    id = "lenet5-mnist/f6/32px-bilinear"

    def __init__(self, weights=None, device=None, module=None):
        super().__init__(device)
        if module is None:
            module, self.weights_ref, self.weights_sha256 = _lenet_module(weights, self.device)
        else:
            self.weights_ref, self.weights_sha256 = "<module>", ""
        self.net = module.eval().to(self.device)

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (B, 1|3, H, W) -> float (B, 1, 32, 32) in [0, 1] (RGB -> ITU-R 601 luma)."""
        x = images.float() / 255.0
        if x.shape[1] == 3:
            x = (x * torch.tensor([0.299, 0.587, 0.114], device=x.device).view(1, 3, 1, 1)).sum(1, keepdim=True)
        elif x.shape[1] != 1:
            raise UsageError(f"LeNet features need 1 or 3 channels, got {x.shape[1]}")
        if x.shape[-2:] != (32, 32):
            x = F.interpolate(x, size=(32, 32), mode="bilinear", align_corners=False)
        return x

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net.features(self.preprocess(images)).float()


def make_pipeline(features: str = "inception", *, inception_weights=None, lenet_weights=None, resize_mode="tf1",
                  device=None) -> Pipeline:
    if features == "inception":
        return InceptionPipeline(inception_weights, resize_mode, device)
    if features == "lenet":
        return LeNetPipeline(lenet_weights, device)
    raise UsageError(f"--features must be one of {', '.join(FEATURES)}, not {features!r}")


def pipeline_id(features: str, resize_mode: str = "tf1") -> str:
    """The id a pipeline would carry, without loading any weights."""
    if features == "inception":
        return f"inception-v3-fid/pool3/{resize_mode}"
    if features == "lenet":
        return LeNetPipeline.id
    raise UsageError(f"--features must be one of {', '.join(FEATURES)}, not {features!r}")
