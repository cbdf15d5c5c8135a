"""Build a tiny random-weight Llama for fast, deterministic vLLM tests.

A BPE tokenizer trained on a few thousand synthetic sentences, a chat
template, and a 2-layer LlamaConfig with seeded random weights (~1.4M
parameters). Runs in the LLM runtime environment:

    .venv-llm/bin/python tests/support/tiny_llama.py OUT_DIR
"""

import random
import sys
from pathlib import Path

WORDS = [
    "welcome",
    "store",
    "offer",
    "today",
    "shoes",
    "jacket",
    "coffee",
    "running",
    "trail",
    "rain",
    "soho",
    "flatiron",
    "discount",
    "you",
    "your",
    "the",
    "a",
    "to",
    "in",
    "for",
    "with",
    "and",
    "of",
    "is",
    "at",
    "on",
    "new",
    "look",
    "see",
    "try",
    "gift",
    "headline",
    "message",
    "product",
    "customer",
    "alice",
    "bruno",
    "hana",
    "omar",
    "priya",
    "{",
    "}",
    "[",
    "]",
    ":",
    ",",
    '"',
]
# Positions the model has, and so the longest context vLLM may give it. Its
# tokenizer knows only WORDS, so a prompt costs about twice the tokens it
# does with SmolLM2's: Alice's store-entry prompt is 737 tokens (variant a)
# or 770 (b), against 385 and 401 for SmolLM2, more than the 512 the
# embedded server allows. The longest of the four moment types' is
# browse abandonment's, 798 (b; 385 for SmolLM2).
MAX_POSITIONS = 1024
CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}<|end|>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def corpus(n: int = 3000) -> list[str]:
    rng = random.Random(0)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 25))) for _ in range(n)]


def build(out: Path) -> None:
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    special = ["<unk>", "<s>", "</s>", "<|system|>", "<|user|>", "<|assistant|>", "<|end|>"]
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(
        vocab_size=1024,
        special_tokens=special,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(corpus(), trainer)
    from tokenizers import decoders

    tok.decoder = decoders.ByteLevel()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="<unk>",
        bos_token="<s>",
        eos_token="<|end|>",
        pad_token="</s>",
    )
    fast.chat_template = CHAT_TEMPLATE
    config = LlamaConfig(
        vocab_size=fast.vocab_size,
        hidden_size=256,
        intermediate_size=512,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=MAX_POSITIONS,
        bos_token_id=fast.bos_token_id,
        eos_token_id=fast.eos_token_id,
        pad_token_id=fast.pad_token_id,
        tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    fast.save_pretrained(out)


if __name__ == "__main__":
    build(Path(sys.argv[1]))
