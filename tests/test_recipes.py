"""configs/<dataset>/<method>.yaml: each loads with the config loader and is the config reproduce builds."""

from __future__ import annotations

from pathlib import Path

import pytest

from tinydistill.config.loader import load_config
from tinydistill.study.configs import config_for
from tinydistill.study.paper import DATASETS
from tinydistill.study.recipes import RECIPE_METHODS, recipe_path, recipe_sweep, recipe_text
from tinydistill.study.suites import plan_cells
from tinydistill.study.sweep import sweep_base

REPO = Path(__file__).resolve().parents[1]


def test_the_recipe_files_are_exactly_the_paper_grid():
    found = {p.relative_to(REPO / "configs").as_posix() for p in (REPO / "configs").glob("*/*.yaml")
             if p.parent.name != "accelerate"}
    assert found == {f"{d}/{m}.yaml" for d in DATASETS for m in RECIPE_METHODS}
    assert len(found) == 36


@pytest.mark.parametrize("dataset", DATASETS)
def test_each_recipe_validates_and_matches_what_reproduce_builds(dataset, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # reproduce's run folders are relative: the fine-tuned student KD reads is here
    sweep = recipe_sweep()
    cells = [c for c in plan_cells(sweep) if c.dataset == dataset]
    assert sorted(c.variant.name for c in cells) == sorted(RECIPE_METHODS)
    for cell in cells:
        if cell.variant.uses_finetuned_teacher:
            (cell.run_dir.parents[1] / "finetune" / "seed0" / "best").mkdir(parents=True)
    for cell in cells:
        path = recipe_path(REPO, dataset, cell.variant.name)
        recipe = load_config(path)  # the project's loader: strict keys, every value validated
        built = config_for(cell, sweep_base(sweep))
        assert recipe.model_dump() == built.model_dump(), path
        assert recipe.method == cell.variant.method and recipe.seed == 0
        assert path.read_text(encoding="utf-8") == recipe_text(dataset, cell.variant.name)  # not edited by hand


def test_kd_recipes_distil_the_fine_tuned_recipe():
    for dataset in DATASETS:
        finetune = load_config(recipe_path(REPO, dataset, "finetune"))
        kd = load_config(recipe_path(REPO, dataset, "kd"))
        assert kd.whitebox.teacher_model == str(finetune.run_dir / "best")
