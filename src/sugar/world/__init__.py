"""The procedural world: scenes with exact ground truth, written as real datasets' files.

No captioned-image corpus can be downloaded where this project is built and tested, so it
carries its own: coloured shapes on a grid, captioned, told as stories, paired as Winoground /
MMVP hard negatives, asked about (VQA, POPE, RAG, WebQA), each task written in the on-disk
format of the real dataset it stands for, so the same loaders read the world and the real data.

    from sugar.world import build_world, load_manifest
    manifest_path = build_world("data/world", seed=0, scale="small")
    coco_json = load_manifest("data/world").path("captions", format="coco-karpathy-json")
"""

from sugar.world.build import (
    DEFAULT_IMAGE_SIZE,
    SCALES,
    ManifestFile,
    SceneRecord,
    WorldManifest,
    WorldScale,
    build_world,
    load_manifest,
    load_scenes,
)
from sugar.world.language import scene_captions
from sugar.world.render import render_scene
from sugar.world.scene import (
    ALL_COMBOS,
    COLOURS,
    PALETTE,
    RELATIONS,
    SHAPES,
    SIZES,
    Background,
    Scene,
    WorldObject,
    sample_scene,
)
from sugar.world.splits import heldout_combos

__all__ = [
    "ALL_COMBOS",
    "COLOURS",
    "DEFAULT_IMAGE_SIZE",
    "PALETTE",
    "RELATIONS",
    "SCALES",
    "SHAPES",
    "SIZES",
    "Background",
    "ManifestFile",
    "Scene",
    "SceneRecord",
    "WorldManifest",
    "WorldObject",
    "WorldScale",
    "build_world",
    "heldout_combos",
    "load_manifest",
    "load_scenes",
    "render_scene",
    "sample_scene",
    "scene_captions",
]
