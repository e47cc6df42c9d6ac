"""The offline datasets: scikit-learn's bundled digits, and Python's own standard library as text.

Both are on every machine that has ravine's ``compare`` extra, so the experiments never download anything.
Splits are fixed (they do not depend on the run's seed): a seed changes the initial weights and the order of
the mini-batches, never which examples are held out.
"""

from __future__ import annotations

import sysconfig
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import torch

SPLIT_SEED = 20241121  # the one fixed permutation the digits are split by


@dataclass(frozen=True)
class Split:
    """Inputs and targets of one split (train, val or test)."""

    inputs: torch.Tensor
    targets: torch.Tensor

    def __len__(self) -> int:
        return len(self.targets)


@cache
def digits() -> dict[str, Split]:
    """The 1,797 8×8 handwritten digits: 60/20/20 train/val/test, standardised with the training statistics."""
    from sklearn.datasets import load_digits

    data = load_digits()
    inputs = torch.tensor(data.data, dtype=torch.float32)
    targets = torch.tensor(data.target, dtype=torch.long)
    order = torch.randperm(len(targets), generator=torch.Generator().manual_seed(SPLIT_SEED))
    n_train, n_val = int(0.6 * len(order)), int(0.2 * len(order))
    parts = {"train": order[:n_train], "val": order[n_train:n_train + n_val], "test": order[n_train + n_val:]}
    mean = inputs[parts["train"]].mean(0)
    std = inputs[parts["train"]].std(0).clamp_min(1e-3)  # some border pixels are always 0
    return {name: Split((inputs[idx] - mean) / std, targets[idx]) for name, idx in parts.items()}


# A fixed list of standard-library modules present in every CPython since 3.10; the text is their source.
STDLIB_FILES = (
    "argparse.py", "ast.py", "base64.py", "bisect.py", "calendar.py", "cmd.py", "code.py", "codecs.py",
    "colorsys.py", "configparser.py", "contextlib.py", "copy.py", "csv.py", "dataclasses.py", "difflib.py",
    "enum.py", "fnmatch.py", "fractions.py", "ftplib.py", "functools.py", "getopt.py", "gettext.py", "glob.py",
    "heapq.py", "hmac.py", "inspect.py", "ipaddress.py", "keyword.py", "linecache.py", "locale.py",
    "mimetypes.py", "numbers.py", "operator.py", "optparse.py", "pathlib.py", "pickle.py", "pprint.py",
    "queue.py", "random.py", "reprlib.py", "sched.py", "secrets.py", "selectors.py", "shlex.py", "shutil.py",
    "smtplib.py", "socket.py", "statistics.py", "string.py", "subprocess.py", "tempfile.py", "textwrap.py",
    "threading.py", "timeit.py", "token.py", "tokenize.py", "trace.py", "traceback.py", "types.py",
    "typing.py", "uuid.py", "warnings.py", "weakref.py", "zipimport.py",
)
VOCAB = "\n" + "".join(chr(c) for c in range(32, 127))  # newline + printable ASCII; anything else is UNKNOWN
UNKNOWN = len(VOCAB)
VOCAB_SIZE = len(VOCAB) + 1


def stdlib_source(files: tuple[str, ...] = STDLIB_FILES) -> list[str]:
    """The text of each file in ``files``, read from this interpreter's standard library."""
    root = Path(sysconfig.get_paths()["stdlib"])
    missing = [name for name in files if not (root / name).is_file()]
    if missing:
        raise FileNotFoundError(f"standard-library files not found under {root}: {', '.join(missing)}")
    return [(root / name).read_text(encoding="utf-8", errors="replace") for name in files]


def encode(text: str) -> torch.Tensor:
    """Characters to token ids (a character outside :data:`VOCAB` becomes :data:`UNKNOWN`)."""
    index = {c: i for i, c in enumerate(VOCAB)}
    return torch.tensor([index.get(c, UNKNOWN) for c in text.replace("\t", "    ")], dtype=torch.long)


@cache
def stdlib_text() -> dict[str, torch.Tensor]:
    """Token streams: each file's first 80% goes to train, the next 10% to val and the last 10% to test."""
    parts: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    for text in stdlib_source():
        a, b = int(0.8 * len(text)), int(0.9 * len(text))
        parts["train"].append(text[:a])
        parts["val"].append(text[a:b])
        parts["test"].append(text[b:])
    return {name: encode("\n".join(texts)) for name, texts in parts.items()}
