#!/usr/bin/env bash
# Regenerate the shipped converted checkpoints under checkpoints/ from the original files in ../shared/assets
# (or $GPM_ASSETS). Run from the repository root: bash scripts/convert_assets.sh
set -euo pipefail
A="${GPM_ASSETS:-../shared/assets}"
C=checkpoints
gpm() { python -m gpmcli "$@"; }
gpm convert "$A/csinva-mnist-gan-mlp/G--300.ckpt" --from csinva-mlp-gan-g -o "$C/mnist-mlp-gan/generator" --force
gpm convert "$A/csinva-mnist-gan-mlp/D--300.ckpt" --from csinva-mlp-gan-d -o "$C/mnist-mlp-gan/discriminator" --force
gpm convert "$A/ryhan-mnist-wgangp/generator.pth" --from ryhan-wgangp-g -o "$C/mnist-wgangp/generator" --force
gpm convert "$A/ryhan-mnist-wgangp/critic.pth" --from ryhan-wgangp-critic -o "$C/mnist-wgangp/critic" --force
gpm convert "$A/csinva-mnist-lenet/lenet_epoch=12_test_acc=0.991.pth" --from csinva-lenet -o "$C/mnist-lenet" --force
gpm convert "$A/csinva-mnist-dcgan-netD/netD_epoch_99.pth" --from csinva-dcgan-d -o "$C/mnist-dcgan-netd" --force
