"""How large are L_g and L_d, and their gradients, at the start of the Sugar stage? Sizes alpha.

    python benchmarks/loss_balance.py --model runs/demo/base/model --world runs/demo/world --teachers runs/demo/teachers

L_d = (1/n) sum_ij (M_r - M_l)^2 is a sum over the n prefixes of a batch divided by n, so its
value grows with the batch while L_g (a mean over tokens) does not. This measures, on a few
sugar-stage batches from the base model, both losses and the norms of their gradients on the
parameters they share (projector and LoRA adapters of the LM), and prints the alpha that would
make alpha * |grad L_d| equal |grad L_g| there.
"""

from __future__ import annotations

import argparse
import statistics
from dataclasses import replace
from pathlib import Path

import torch

from sugar.train.config import load_config
from sugar.train.examples import load_world_examples
from sugar.train.mixture import BatchStream
from sugar.train.recipe import SliceTeacher, build_model, compute_losses


def gradient_norm(loss: torch.Tensor, parameters: list[torch.nn.Parameter]) -> float:
    grads = torch.autograd.grad(loss, parameters, retain_graph=True, allow_unused=True)
    return float(torch.sqrt(sum((g.float() ** 2).sum() for g in grads if g is not None)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="the base model folder")
    parser.add_argument("--world", required=True)
    parser.add_argument("--teachers", required=True)
    parser.add_argument("--batches", type=int, default=4)
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="sugar-stage TrainConfig overrides (e.g. the mix)")
    args = parser.parse_args()

    from sugar.demo import DEMO_RECIPE
    from sugar.teachers import TeacherSuite

    recipe = [f"{k}={v}" for k, v in DEMO_RECIPE["sugar"].items()]
    config = load_config(None, [*recipe, "stage=sugar", f"init_from={args.model}", f"world={args.world}",
                                f"teachers={args.teachers}", "max_caption_images=4000", *args.overrides])
    model = build_model(config, lambda: [])
    model.train()
    teacher = SliceTeacher(TeacherSuite.load(config.teachers), config.teacher_kernel)
    pools = load_world_examples(Path(config.world), "train",
                                [k for k, v in config.mix.items() if v], max_caption_images=4000)
    stream = BatchStream(pools, config.mix, config.seed, paired=("captions",))
    shared = model.generative_parameters()
    rows = []
    generative_only = replace(config, alpha=0.0)  # total = L_g
    discriminative_only = replace(config, alpha=1.0, use_generative_loss=False)  # total = L_d
    for step in range(args.batches):
        examples = stream.batch(step)
        losses = compute_losses(model, model.processor, examples, generative_only, teacher, step, 0, torch.device("cpu"))
        g = gradient_norm(losses.total, shared)
        value_g = float(losses.total)
        losses = compute_losses(model, model.processor, examples, discriminative_only, teacher, step, 0, torch.device("cpu"))
        d = gradient_norm(losses.total, shared)
        rows.append((value_g, float(losses.total), g, d))
        print(f"batch {step}: L_g {rows[-1][0]:.3f}  L_d {rows[-1][1]:.3f}  |grad L_g| {g:.4f}  |grad L_d| {d:.4f}", flush=True)
    mean = [statistics.mean(r[i] for r in rows) for i in range(4)]
    print(f"\nmean over {len(rows)} batches of {config.batch_size} documents "
          f"({config.prefixes_per_document} prefixes each): L_g {mean[0]:.3f}, L_d {mean[1]:.3f}, "
          f"|grad L_g| {mean[2]:.4f}, |grad L_d| {mean[3]:.4f} on {sum(p.numel() for p in shared):,} shared parameters")
    print(f"alpha with equal gradient norms on the shared parameters: {mean[2] / mean[3]:.3f}")
    print(f"alpha with equal loss values: {mean[0] / mean[1]:.3f}")


if __name__ == "__main__":
    main()
