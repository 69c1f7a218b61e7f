"""``gpm train discriminator --for ddls``: a logistic discriminator calibrated against a *frozen* generator, for DDLS
(ALGORITHMS.md section 7; Che et al. 2020 calibrate the GAN's discriminator the same way before sampling).

DDLS samples ``p_g(x) exp(d(x))``, which is the data distribution only when ``d = log q/p_g`` for the generator at
hand. A discriminator taken from the end of GAN training is rarely that: it was trained against earlier generators,
often under a gradient penalty that flattens it. This role fixes the generator (``--generator REF``: a generator
checkpoint or a bundle holding one) and minimises the vanilla logistic loss
``mean softplus(d(G(z))) + mean softplus(-d(x))`` on data batches ``x`` and fresh ``z ~ N(0, I)``, whose optimum is
``log q/p_g`` (tested in closed form). ``--init REF`` starts from an existing discriminator (e.g. the GAN's own),
otherwise a fresh MLP / DCGAN discriminator is built. The output is an unconditioned logit discriminator; put it in a
bundle beside the generator and sample with ``gpm sample --model ddls``.

Calibrating a pretrained pair (DRS, Azadi et al. 2019; MH-GAN, Turner et al. 2019): ``--init`` may also be a WGAN
critic (its raw score becomes the logit), and ``--train last`` re-fits only the last layer with parameters (a logistic
regression on the network's own penultimate features: convex, cheap, the body untouched), ``--train affine`` fits only
a scale and an offset of the output (Platt scaling, as MH-GAN calibrates; folded into the last layer, so the checkpoint
keeps the original architecture), ``--train all`` fine-tunes every weight. A network started from ``--init`` keeps its
BatchNorm layers in eval mode (saved statistics), so the calibrated logit is a per-sample function as DDLS evaluates
it. ``--data mnist`` (32x32, padded by 2) against a 28x28 generator is cropped back to 28x28 (the exact inverse of the
padding). ``--noise S`` adds N(0, S^2) instance noise to both sides, which smooths the ratio when real and generated
samples are (nearly) separable; there a long logistic fit diverges instead of calibrating (the WGAN-GP critic's
features separate MNIST from its generator perfectly, with or without ``--noise 0.1``: ``--train last`` fails there;
Platt scaling first, then a short ``--train all`` at a small learning rate that stops while the loss is well above 0,
is what the shipped ``mnist-wgangp-ddls`` does). Without ``--init``, ``--arch mlp`` builds an MLP on the flattened
input (any shape, e.g. 28x28 images that the DCGAN default refuses).
"""

from __future__ import annotations

import copy
import math

import torch

from gpmcli.errors import UsageError
from gpmcli.fields.latent import GeneratorMap, latent_shape_of
from gpmcli.train import Opt, RoleSpec, register_role
from gpmcli.train.adversarial import adam, disc_config, discriminator_loss, gradient_penalty
from gpmcli.train.common import RoleTrainer
from gpmcli.train.gan import default_discriminator


def _component(ref: str, role: str, device):
    from gpmcli.refs import parse_ref

    return parse_ref(ref).component(role, device=device)


def _is_padded_mnist(data, gen_shape: tuple[int, ...]) -> bool:
    """``--data mnist`` (GPM's 32x32, padded by 2 with the background value) against a 28x28 generator."""
    return (str(getattr(data, "name", "")).lower() == "mnist" and tuple(data.shape) == (1, 32, 32)
            and gen_shape == (1, 28, 28))


def _last_layer(net: torch.nn.Module) -> torch.nn.Module | None:
    """The last module (in registration order) that holds parameters of its own: a logit network's output layer."""
    last = None
    for m in net.modules():
        if any(True for _ in m.parameters(recurse=False)):
            last = m
    return last


class DDLSDiscTrainer(RoleTrainer):
    role = "discriminator"

    def setup(self):
        a, shape, dev = self.args, tuple(self.ctx.data.shape), self.ctx.device
        if not a["generator"]:
            raise UsageError("gpm train discriminator --for ddls needs --generator REF (the frozen generator)")
        if a["gp"] < 0 or a["noise"] < 0:
            raise UsageError("--gp and --noise must be >= 0")
        if a["train"] not in ("all", "last", "affine"):
            raise UsageError(f"--train {a['train']!r}: choose all (fine-tune every weight), last (re-fit the last "
                             "layer) or affine (a scale and an offset of the output)")
        if a["train"] in ("last", "affine") and not a["init"]:
            raise UsageError(f"--train {a['train']} re-fits an existing discriminator: give --init REF")
        gc = _component(a["generator"], "generator", dev)
        self.crop = 0
        if gc.data_shape and _is_padded_mnist(self.ctx.data, tuple(gc.data_shape)):
            self.crop, shape = 2, tuple(gc.data_shape)  # --data mnist is padded by 2 to 32x32; the GAN makes 28x28
        self.shape = shape
        if gc.data_shape and tuple(gc.data_shape) != shape:
            raise UsageError(f"--generator {a['generator']} makes samples of shape {list(gc.data_shape)}, the data "
                             f"has {list(shape)}")
        g_range, d_range = gc.data_range, self.ctx.data.range
        if g_range and d_range and tuple(g_range) != tuple(d_range):
            raise UsageError(f"--generator {a['generator']} outputs values in {list(g_range)}, the data is in "
                             f"{list(d_range)}")
        self.latent = latent_shape_of(gc)
        self.G = GeneratorMap(gc.module.to(dev).eval().requires_grad_(False), self.latent, shape)
        self.generator_ref = gc.ref
        if a["init"]:
            dc = _component(a["init"], "discriminator", dev)
            if dc.config.get("output") not in ("logit", "critic") or dc.config.get("time"):
                raise UsageError(f"--init {a['init']}: DDLS calibration starts from an unconditioned logit or critic "
                                 f"discriminator (this one has output {dc.config.get('output')!r}"
                                 f"{', a time variable' if dc.config.get('time') else ''})")
            if dc.config.get("real", "high") != "high":
                raise UsageError(f"--init {a['init']}: its output is low on real data; DDLS calibration needs a "
                                 "discriminator whose output is high on real data")
            self.D, self.arch = copy.deepcopy(dc.module).to(dev).eval(), dc.config["arch"]
            self.init_ref, self.init_output = dc.ref, dc.config.get("output")
            if a["arch"]:
                raise UsageError("--arch builds a fresh network: it does not go with --init")
            self.D.requires_grad_(a["train"] == "all")
            if a["train"] in ("last", "affine"):
                last = _last_layer(self.D)
                if last is None or (a["train"] == "affine" and getattr(last, "bias", None) is None):
                    raise UsageError(f"--init {a['init']}: the network has no last layer with a weight and a bias "
                                     "to re-fit")
                last.requires_grad_(a["train"] == "last")
                if a["train"] == "affine":  # d' = s d + b, folded into the last layer: W <- s W0, c <- s c0 + b
                    self.last, self.w0, self.c0 = last, last.weight.detach().clone(), last.bias.detach().clone()
                    self.affine = torch.nn.Parameter(torch.tensor([1.0, 0.0], device=dev))
                    self.D0 = copy.deepcopy(self.D).eval().requires_grad_(False)
        else:
            if a["arch"] not in (None, "mlp", "dcgan"):
                raise UsageError(f"--arch {a['arch']!r}: choose mlp (on the flattened input) or dcgan (square "
                                 "power-of-two images)")
            flat = (math.prod(shape),) if a["arch"] == "mlp" else shape  # an MLP sees the pixels as one vector
            self.D, self.arch = default_discriminator(flat, a["width"], a["depth"])
            self.D, self.init_ref, self.init_output = self.D.to(dev), None, None
        params = [p for p in self.D.parameters() if p.requires_grad]
        if a["train"] == "affine":
            params = [self.affine]
        self.opt = adam(params, self.ctx.opts.lr, (a["beta1"], 0.999))

    def _fold(self):
        """Write the current scale and offset into the last layer (so the saved network computes s d + b)."""
        with torch.no_grad():
            s, b = self.affine[0], self.affine[1]
            self.last.weight.copy_(s * self.w0)
            self.last.bias.copy_(s * self.c0 + b)

    def modules(self):
        return {"discriminator": self.D}

    def extra_state(self):
        return {"affine": self.affine.detach().cpu()} if self.args["train"] == "affine" else {}

    def load_extra_state(self, state):
        if self.args["train"] == "affine" and "affine" in state:
            with torch.no_grad():
                self.affine.copy_(state["affine"].to(self.affine.device))
            self._fold()

    def optimizers(self):
        return {"discriminator": self.opt}

    def f(self, x: torch.Tensor) -> torch.Tensor:
        with self.ctx.autocast():
            if self.args["train"] == "affine":  # s d0(x) + b on the frozen original
                return self.affine[0] * self.D0(x).reshape(x.shape[0]).float() + self.affine[1]
            return self.D(x).reshape(x.shape[0]).float()

    def train_step(self, real):
        a, n, g = self.args, real.shape[0], self.ctx.generator()
        if self.init_ref is not None:
            self.D.eval()  # saved BatchNorm statistics: the logit stays a per-sample function
        if self.crop:
            c = self.crop
            real = real[..., c:-c, c:-c]
        with torch.no_grad(), self.ctx.autocast():
            fake = self.G(self.ctx.randn(n, *self.latent, generator=g)).float()
        if a["noise"]:  # instance noise on both sides: a smooth ratio even where the two laws do not overlap
            real = real + a["noise"] * self.ctx.randn(*real.shape, generator=g)
            fake = fake + a["noise"] * self.ctx.randn(*fake.shape, generator=g)
        loss = discriminator_loss("vanilla", self.f(fake), self.f(real))
        if a["gp"]:
            loss = loss + a["gp"] * gradient_penalty(self.f, real, fake, self.ctx.rand(n, generator=g))
        self.ctx.update(self.opt, loss)
        if a["train"] == "affine":
            self._fold()
        with torch.no_grad():
            acc = 0.5 * ((self.f(real) > 0).float().mean() + (self.f(fake) < 0).float().mean())
        return {"loss_d": float(loss.detach()), "acc": float(acc)}

    def exports(self):
        data = self.ctx.data.describe()
        data["shape"] = list(self.shape)
        return {"": ("discriminator", {"role": "discriminator", "arch": self.arch, **disc_config("vanilla"),
                                       "time": None, "data": data,
                                       "calibrated_for": {"generator": self.generator_ref, "init": self.init_ref,
                                                          "init_output": self.init_output,
                                                          "train": self.args["train"],
                                                          "noise": self.args["noise"]}})}

    def card(self, name, config):
        a = self.args
        init = f"started from `{self.init_ref}`" if self.init_ref else "a fresh network"
        if self.init_ref and a["train"] == "last":
            init += ", only its last layer re-fitted (logistic regression on its own features)"
        elif self.init_ref:
            init += ", every weight fine-tuned"
        gp = f", zero-centred gradient penalty {a['gp']}" if a["gp"] else ", no gradient penalty"
        return (f"Logistic discriminator calibrated for DDLS against the frozen generator `{self.generator_ref}` "
                f"({init}; vanilla loss{gp}): its logit estimates log q/p_g for that generator, which is what "
                "DDLS's energy E(z) = |z|^2/2 - d(G(z)) assumes. Sample with `gpm sample --model ddls --generator "
                f"{self.generator_ref} --discriminator DIR` (or a bundle naming both).")


register_role(RoleSpec("discriminator:ddls", DDLSDiscTrainer,
                       "logistic discriminator calibrated against a frozen generator, for DDLS (section 7)", options=[
    Opt("generator", str, None, "the frozen generator: checkpoint, registry bundle or hf: reference (required)"),
    Opt("init", str, None, "start from this discriminator (e.g. the GAN's own: an unconditioned logit or critic)"),
    Opt("train", str, "all", "with --init: all (fine-tune every weight), last (re-fit only the last layer) or affine "
        "(Platt scaling: a scale and an offset of the output, folded into the last layer)"),
    Opt("arch", str, None, "without --init: mlp (an MLP on the flattened input, any shape) or dcgan (square "
        "power-of-two images); default dcgan for images, mlp for vectors"),
    Opt("width", int, None, "MLP width (default 128) or DCGAN base channels (default 32), without --init"),
    Opt("depth", int, 3, "MLP hidden layers, without --init"),
    Opt("gp", float, 0.0, "zero-centred gradient penalty weight on real/fake interpolates"),
    Opt("noise", float, 0.0, "std of Gaussian instance noise added to real and generated inputs (smooths the ratio "
        "of nearly separable pairs)"),
    Opt("beta1", float, 0.5, "Adam beta1 (beta2 is 0.999)"),
]))
