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


def test_text_template_placeholders():
    from vlmrm.reward.templates import render_template_text

    text = "Rate {dimensions} of '{prompt}'. VQ {reward_token:VQ} TA {reward_token:TA} {other}"
    rendered = render_template_text(text, "a {dimensions} cat", ["VQ", "TA"])
    assert rendered == (
        "Rate visual quality, text alignment of 'a {dimensions} cat'. VQ <|VQ_reward|> TA <|TA_reward|> {other}"
    )


def test_prompt_template_file_is_stored_in_the_checkpoint_spec(tmp_path, tiny_cache):
    from transformers import AutoProcessor

    from vlmrm.core.config import ConfigError
    from vlmrm.modeling.loading import build_spec
    from vlmrm.modeling.reward_model import RewardSpec
    from vlmrm.reward.collator import PairCollator
    from vlmrm.reward.config import parse_config
    from vlmrm.testing.tiny import tiny_checkpoint

    template = tmp_path / "mine.txt"
    template.write_text("Judge: {prompt}\nquality {reward_token:VQ}\n")
    values = {"eval_dim": ["VQ"], "output_dir": "unused", "report_to": "none"}
    cfg = parse_config(values={**values, "prompt_template_file": str(template)})
    spec = RewardSpec.from_dict(build_spec(cfg.model, cfg.data, cfg.training, []).to_dict())
    template.unlink()  # inference reads the stored text, not the file
    assert spec.prompt_template_text == "Judge: {prompt}\nquality {reward_token:VQ}\n"
    processor = AutoProcessor.from_pretrained(tiny_checkpoint("qwen2_vl", tiny_cache))
    chat = PairCollator.from_spec(processor, spec).chat_text("a cat")
    assert "Judge: a cat\nquality <|VQ_reward|>\n" in chat

    with pytest.raises(ConfigError, match="mine.txt does not exist"):
        parse_config(values={**values, "prompt_template_file": str(template)})
    template.write_text("no placeholder")
    with pytest.raises(ConfigError, match=r"mine.txt: prompt template has no \{prompt\}"):
        parse_config(values={**values, "prompt_template_file": str(template)})
