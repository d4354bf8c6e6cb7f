"""Cost of the discriminative side: a Sugar step against a generative-only step on the same batch.

    python benchmarks/train_step.py --world runs/demo/world --teachers runs/demo/teachers
    python benchmarks/train_step.py --world runs/demo/world --teachers runs/demo/teachers --model runs/demo/base/model "mix={captions: 16, vqa: 2, rag: 2}"

Both steps run forward + backward + AdamW on the same documents with warm caches (vision-tower
features and teacher slice features computed once beforehand), so the ratio isolates what Sugar
adds: pooling, the retrieval head, the GAK targets and L_d. Also prints encode throughput.
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import replace
from pathlib import Path

import torch

from sugar.train.config import load_config
from sugar.train.examples import load_world_examples, tokenizer_corpus
from sugar.train.mixture import BatchStream
from sugar.train.recipe import SliceTeacher, build_model, compute_losses, load_image


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--world", required=True)
    parser.add_argument("--teachers", required=True)
    parser.add_argument("--model", help="a saved SugarModel folder (default: a fresh preset of the default model)")
    parser.add_argument("--batches", type=int, default=6, help="distinct batches timed (each run twice)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    args = parser.parse_args()

    from sugar.teachers import TeacherSuite

    base_overrides = [f"world={args.world}", f"teachers={args.teachers}", *args.overrides]
    if args.model:
        base_overrides.append(f"init_from={args.model}")
    sugar_config = load_config(None, ["stage=sugar", *base_overrides])
    generative_config = replace(sugar_config, stage="base")
    world = Path(args.world)
    pools = load_world_examples(world, "train", [k for k, v in sugar_config.mix.items() if v])
    model = build_model(sugar_config, lambda: tokenizer_corpus(world))
    teacher = SliceTeacher(TeacherSuite.load(args.teachers), sugar_config.teacher_kernel)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    paired = ("captions",) if sugar_config.paired_captions else ()
    stream = BatchStream(pools, sugar_config.mix, sugar_config.seed, paired=paired)
    batches = [stream.batch(step) for step in range(args.batches)]
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, batch {sugar_config.batch_size} documents")

    def step(config, examples, index: int) -> float:
        start = time.perf_counter()
        losses = compute_losses(model, model.processor, examples, config, teacher, index, 0, torch.device("cpu"))
        losses.total.backward()
        optimizer.step()
        optimizer.zero_grad()
        return time.perf_counter() - start

    for index, examples in enumerate(batches):  # warm the vision and teacher caches
        step(sugar_config, examples, index)
    times: dict[str, list[float]] = {"generative": [], "sugar": []}
    for _ in range(args.repeats):
        for index, examples in enumerate(batches):
            times["generative"].append(step(generative_config, examples, index))
            times["sugar"].append(step(sugar_config, examples, index))
    generative, sugar = statistics.median(times["generative"]), statistics.median(times["sugar"])
    print(f"generative-only step (L_g)        {generative * 1e3:8.1f} ms (median of {len(times['generative'])})")
    print(f"Sugar step (L_g + alpha * L_d)    {sugar * 1e3:8.1f} ms")
    print(f"ratio Sugar / generative          {sugar / generative:8.3f}x   (target <= 1.10x)")

    # bf16 autocast against float32 on the same Sugar steps, interleaved (the setting is read per call)
    chosen = model.config.autocast
    precision: dict[str, list[float]] = {"off": [], chosen: []}
    for _ in range(args.repeats):
        for index, examples in enumerate(batches):
            for setting in precision:
                model.config.autocast = setting
                precision[setting].append(step(sugar_config, examples, index))
    model.config.autocast = chosen
    exact, mixed = statistics.median(precision["off"]), statistics.median(precision[chosen])
    print(f"Sugar step, float32               {exact * 1e3:8.1f} ms")
    print(f"Sugar step, autocast={chosen:<12s}{mixed * 1e3:8.1f} ms   ({exact / mixed:.2f}x faster)")

    documents = [[load_image(s) if not isinstance(s, str) else s for s in segments] for batch in batches for _, segments, _ in batch]
    model.encode(documents[:8], batch_size=8)  # warm-up
    start = time.perf_counter()
    model.encode(documents, batch_size=32, show_progress=False)
    elapsed = time.perf_counter() - start
    print(f"encode throughput                 {len(documents) / elapsed:8.1f} documents/s ({len(documents)} documents)")


if __name__ == "__main__":
    main()
