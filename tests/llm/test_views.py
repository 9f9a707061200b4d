"""The view grammar: specs round-trip, bad specs are user errors, coefficients follow the grammar."""

import pytest

from dormant.errors import DormantError
from dormant.llm.engine.views import Selection, View, ViewSpecError, parse_views
from dormant.llm.weights.names import layer_of


@pytest.mark.parametrize("spec", ["base", "ft", "amp:3", "amp:-1.5", "amp:0", "amp:5@mlp@27", "amp:2@down_proj",
                                  "restore:19-23", "restore:mlp@27", "restore:3+5+19-23", "restore:all", "restore:self_attn"])
def test_view_specs_round_trip(spec):
    assert str(View.parse(spec)) == spec
    assert View.parse(str(View.parse(spec))) == View.parse(spec)


@pytest.mark.parametrize("bad", ["amp:x", "amplify:3", "restore:", "restore:mlp@2-x", "restore:5-3", "foo"])
def test_bad_view_specs_are_user_errors(bad):
    with pytest.raises(ViewSpecError) as exc:
        View.parse(bad)
    assert isinstance(exc.value, DormantError)


def test_coefficients_follow_the_grammar():
    up27, down27, q5 = "model.layers.27.mlp.up_proj.weight", "model.layers.27.mlp.down_proj.weight", "model.layers.5.self_attn.q_proj.weight"
    assert layer_of(up27) == 27 and layer_of("model.embed_tokens.weight") is None
    assert [View.parse("restore:mlp@27").coefficient(n) for n in (up27, down27, q5)] == [0.0, 0.0, 1.0]
    assert [View.parse("amp:4@down_proj").coefficient(n) for n in (up27, down27, q5)] == [1.0, 4.0, 1.0]
    assert [View.parse("restore:5").coefficient(n) for n in (up27, q5)] == [1.0, 0.0]
    assert [View.parse("amp:-2").coefficient(n) for n in (up27, q5)] == [-2.0, -2.0]
    assert Selection.parse("mlp@19-23").matches("model.layers.20.mlp.gate_proj.weight")
    assert not Selection.parse("mlp@19-23").matches("model.layers.24.mlp.gate_proj.weight")
    assert [str(v) for v in parse_views("base, ft,amp:3")] == ["base", "ft", "amp:3"]


def test_amplified_restoration_view_restores_the_selection_and_amplifies_the_rest():
    from dormant.llm.engine.views import View, ViewSpecError

    v = View.parse("amp:4/restore:2-3")
    assert str(v) == "amp:4/restore:2-3"
    assert v.coefficient("model.layers.2.mlp.up_proj.weight") == 0.0 and v.coefficient("model.layers.0.mlp.up_proj.weight") == 4.0
    assert View.parse("amp:1/restore:mlp@2") == View.parse("restore:mlp@2")
    with pytest.raises(ViewSpecError, match="no @ in the amp part"):
        View.parse("amp:3@2/restore:1")


@pytest.mark.parametrize("bad", ["amp:nan", "amp:inf", "amp:-inf", "amp:1e400", "amp:nan@mlp", "amp:inf/restore:1", "restore:1-", "restore:-3", "amp:3@1+"])
def test_non_finite_factors_and_malformed_layer_lists_are_refused(bad):
    with pytest.raises(ViewSpecError, match="finite|bad layer list"):
        View.parse(bad)
