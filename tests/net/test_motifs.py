"""Grammar, period and segmentation of width sequences; ROM vs varying layers by position."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from dormant.cli.main import app
from dormant.errors import NetworkFileError
from dormant.net.load.spec_format import save_network
from dormant.net.structure.motifs import analyse_motifs, build_grammar, detect_period, read_widths, segment

PUZZLE_WIDTHS = Path(__file__).parents[1] / "data" / "puzzle_widths.txt"


def test_real_puzzle_widths_head_63_blocks_tail():
    widths = read_widths(PUZZLE_WIDTHS)
    assert len(widths) == 2722
    result = analyse_motifs(widths)
    seg = result.segmentation
    assert result.summary == "head(17) [A(42)]x32 [B(42)]x16 [C(42)]x15 tail(58)"
    assert (seg.head, seg.period, seg.n_blocks, seg.tail) == (17, 42, 63, 58)
    assert seg.layers == 2721 == result.n_layers
    assert [g.count for g in seg.groups] == [32, 16, 15]
    assert [g.start_block for g in seg.groups] == [0, 32, 48]
    assert seg.differ_at == [0, 1]  # the groups differ only in their first two widths
    # every block equals its group's variant exactly, and variants agree outside positions 0-1
    seq = widths[1:]
    for g in seg.groups:
        for j in range(g.start_block, g.start_block + g.count):
            assert seq[seg.block_start(j) : seg.block_start(j) + 42] == seg.variants[g.variant]
    assert all(v[2:] == seg.variants[0][2:] for v in seg.variants)
    assert result.round_trip and result.covers_all_layers
    assert seq[:17] + sum((seg.variants[g.variant] * g.count for g in seg.groups), []) + seq[17 + 63 * 42 :] == seq
    assert result.grammar_lines[0].startswith("start: ") and "[R" in result.grammar_lines[0]
    assert result.coverage == 63 * 42 / 2721 and result.approx_period == 42
    # shifting the cut by a layer either way needs more block variants: the choice is not a tie
    near = [a for a in seg.alternatives if abs(a.head - 17) == 1]
    assert near and all(a.n_blocks < 63 or a.variants > len(seg.variants) for a in near)


@pytest.mark.parametrize("seed", range(5))
def test_grammar_round_trips_on_random_and_periodic_sequences(seed):
    rng = np.random.default_rng(seed)
    block = rng.integers(1, 6, size=int(rng.integers(2, 9))).tolist()
    seq = rng.integers(1, 4, size=int(rng.integers(0, 20))).tolist() + block * int(rng.integers(3, 30)) + rng.integers(1, 9, size=7).tolist()
    for cuts in (None, list(range(0, len(seq), max(1, len(block))))):
        g = build_grammar(seq, cuts)
        assert g.expand_all() == seq
        assert len(g.start) <= len(seq)
    noise = rng.integers(1, 50, size=300).tolist()
    assert build_grammar(noise).expand_all() == noise


def test_period_and_segmentation_of_a_clean_sequence():
    block = [5, 9, 9, 7]
    seq = [3, 2] + block * 10 + [1, 1, 1]
    assert detect_period(seq)[0] == 4
    seg = segment(seq, 4, input_width=7)
    assert (seg.head, seg.n_blocks, seg.tail) == (2, 10, 3)
    assert len(seg.variants) == 1 and seg.differ_at == []


def test_deep_circuit_segments_and_rom_positions(periodic_circuit):
    c = periodic_circuit
    result = analyse_motifs(c.net.widths, net=c.net)
    seg = result.segmentation
    assert (seg.head, seg.period, seg.n_blocks, seg.tail) == (c.head, c.period, sum(c.groups), c.tail)
    assert [g.count for g in seg.groups] == c.groups
    assert result.summary == f"head({c.head}) [A(7)]x{c.groups[0]} [B(7)]x{c.groups[1]} tail({c.tail})"
    kinds = {p.position: p for p in result.positions}
    assert kinds[c.varying_bias_position].kind == "biases vary"
    assert kinds[c.varying_bias_position].distinct_biases == c.distinct_constants
    assert kinds[c.varying_weight_position].kind == "weights vary"
    assert kinds[c.varying_weight_position].distinct_weights == c.weight_variants
    assert {q for q, p in kinds.items() if p.kind == "ROM"} == {2, 4, 6}
    assert {kinds[0].kind, kinds[1].kind} <= {"weights vary", "both vary"}  # group A vs B shapes differ


def test_cli_motifs_on_widths_file_and_on_network(tmp_path, small_circuit):
    runner = CliRunner()
    res = runner.invoke(app, ["net", "motifs", str(PUZZLE_WIDTHS), "--out", str(tmp_path / "a"), "--json"])
    assert res.exit_code == 0, res.output
    payload = json.loads(res.stdout)
    assert payload["result"]["summary"] == "head(17) [A(42)]x32 [B(42)]x16 [C(42)]x15 tail(58)"
    assert payload["result"]["positions"] is None
    assert {Path(p).name for p in payload["plots"]} == {"widths.png", "blocks.png"}
    folder = save_network(small_circuit.net, tmp_path / "circuit")
    res = runner.invoke(app, ["net", "motifs", str(folder), "--out", str(tmp_path / "b")])
    assert res.exit_code == 0, res.output
    assert "biases vary" in res.output and "ROM" in res.output
    assert (tmp_path / "b" / "positions.png").exists()


def test_drifting_steps_are_found_by_their_shape():
    """Steps of 6 layers whose widths grow a little each step: no exact period, a clear shape."""
    base = np.array([10, 30, 50, 40, 20, 12])
    seq = [7, 9] + sum(((base + 2 * j).tolist() for j in range(40)), [])
    result = analyse_motifs([5] + seq)
    assert result.approx_period == 6 and result.approx_score > 0.9
    assert result.coverage < 0.5 and any("not exactly" in line for line in result.explanation)
    assert result.round_trip


def test_bad_widths_file(tmp_path):
    (tmp_path / "w.txt").write_text("55, 12, abc")
    with pytest.raises(NetworkFileError, match="not an integer"):
        read_widths(tmp_path / "w.txt")
