import pytest

from vlmrm.modeling.reward_model import reward_token
from vlmrm.reward.templates import PROMPT_TEMPLATES, build_prompt, register_template


@pytest.mark.parametrize("name", sorted(PROMPT_TEMPLATES))
@pytest.mark.parametrize("dims", [["VQ"], ["VQ", "MQ", "TA"], ["Aesthetics", "Physics", "VQ", "MQ", "TA"]])
def test_every_template_renders_for_any_dimensions(name, dims):
    text = build_prompt("a red square moving up", dims, name)
    assert "a red square moving up" in text
    has_tokens = [reward_token(d) in text for d in dims]
    assert all(has_tokens) if name.endswith("_special") else not any(has_tokens)


def test_special_template_orders_tokens_as_eval_dim():
    text = build_prompt("p", ["TA", "VQ"], "detailed_special")
    assert text.index("<|TA_reward|>") < text.index("<|VQ_reward|>")


def test_user_template_without_touching_dataset_code():
    register_template("terse", lambda prompt, dims: f"{'/'.join(dims)}? {prompt}")
    try:
        assert build_prompt("cat", ["VQ", "TA"], "terse") == "VQ/TA? cat"
        with pytest.raises(ValueError, match="already exists"):
            register_template("terse", lambda prompt, dims: prompt)
    finally:
        PROMPT_TEMPLATES.pop("terse")


def test_unknown_template():
    with pytest.raises(ValueError, match="unknown 'nope'"):
        build_prompt("p", ["VQ"], "nope")
