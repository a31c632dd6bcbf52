"""``bench list``: folded to the terminal's width, and the learning rate each profile will use."""

from __future__ import annotations

import re

import pytest

from adapterbench.cli import main
from adapterbench.harness.settings import PROFILE_LR, PROFILE_TASK_LR, PROFILES, resolve_lr
from adapterbench.listing import PAPER_RATE, column_widths, fit_table, profile_rates


@pytest.mark.parametrize("columns", [60, 80, 120, 200])
@pytest.mark.parametrize("what", ["variants", "tasks", "presets"])
def test_every_line_fits_the_terminal(monkeypatch, capsys, columns, what):
    monkeypatch.setenv("COLUMNS", str(columns))  # what shutil.get_terminal_size reads first
    assert main(["list", what]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert max(len(line) for line in lines) <= columns
    assert lines[0].startswith("name ")


def row_block(out: str, name: str) -> str:
    """A folded row's text: its lines up to the blank line that ends it, joined; the learning-rate column is the
    third, so its fragments are taken by position from the header."""
    lines = out.splitlines()
    start = lines[0].index("learning rate per profile")
    end = lines[0].index("defaults")
    first = next(i for i, line in enumerate(lines) if line.startswith(name + " "))
    block = []
    for line in lines[first:]:
        if not line.strip():
            break
        block.append(line[start:end].strip())
    return " ".join(piece for piece in block if piece)


def test_variants_show_each_profiles_rate(monkeypatch, capsys):
    monkeypatch.setenv("COLUMNS", "120")
    assert main(["list", "variants"]) == 0
    out = capsys.readouterr().out
    # The case: AdaLoRA's paper rate is 0.0008, the quick profile trains it at 0.008.
    adalora = row_block(out, "adalora")
    assert adalora.startswith("paper lr=0.0008; quick 0.008; nightly 0.004;")
    assert adalora.endswith(f"smoke, standard: {PAPER_RATE}")
    lora = row_block(out, "lora")  # tasks swept apart with another rate are named
    assert f"quick {PROFILE_LR['quick']['lora']:g} (stsb {PROFILE_TASK_LR['quick']['stsb']['lora']:g}, conll2003 " \
           f"{PROFILE_TASK_LR['quick']['conll2003']['lora']:g})" in lora
    assert "peft:lora: lora's rate in every profile" in row_block(out, "peft:<method>")


def test_profile_rates_agree_with_resolve_lr():
    """Every rate named is what a run of that profile resolves (the listing reads settings, never copies it)."""
    for variant in ("full", "lora", "adalora", "peft:lora", "some-plugin"):
        text = profile_rates(variant, 1.25e-4)
        for profile, settings in PROFILES.items():
            rate = resolve_lr(profile, variant, 1.25e-4, settings)
            swept = variant in PROFILE_LR.get(profile, {})
            assert (f"{profile} {rate:g}" in text) == swept, (variant, profile, text)
            if not swept:
                assert re.search(rf"\b{profile}\b[^;]*: {PAPER_RATE}$", text), (variant, profile, text)
    assert profile_rates("some-plugin", 1.25e-4) == f"paper lr=0.000125; smoke, quick, nightly, standard: {PAPER_RATE}"


def test_folding_gives_width_to_the_widest_column_and_keeps_fixed_ones():
    assert column_widths([10, 50, 30], 60, {1, 2}) == [10, 23, 23]  # the widest first: 10 + 2 + 23 + 2 + 23 = 60
    assert column_widths([10, 50, 30], 200, {1, 2}) == [10, 50, 30]
    assert column_widths([40, 50], 30, {1}) == [40, 8]  # cannot fit: fixed columns stay whole, folded to the floor
    lines = fit_table(("name", "text"), [("a", "one two three four five six")], width=16)
    assert lines == ["name  text", "a     one two", "      three four", "      five six"]


def test_a_run_at_an_unswept_paper_rate_says_so_on_its_line():
    from adapterbench.harness.executors import unswept_note
    from adapterbench.harness.run import RunSpec

    def spec(variant, profile, overrides=None):
        return RunSpec(variant=variant, task="sst2", model="m", seed=0, profile=profile, overrides=overrides or {})

    assert unswept_note(spec("lora", "quick")) == ""  # the quick profile's swept rate
    assert unswept_note(spec("lora", "smoke")) == " (lr: paper rate, not swept for the smoke profile)"
    assert unswept_note(spec("peft:ia3", "quick")) == " (lr: paper rate, not swept for the quick profile)"
    assert unswept_note(spec("lora", "smoke", {"lr": 0.1})) == ""  # the user chose it
