"""A small WordPiece tokenizer, written as a Hugging Face `tokenizer.json` so that
@huggingface/transformers' AutoTokenizer loads it offline, and mirrored here in Python so that
training tokenises exactly as serving does (BertNormalizer + BertPreTokenizer + WordPiece).
"""
import json, os, string, unicodedata

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
MAX_LEN = 24


def _is_punct(ch):
    cp = ord(ch)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(ch).startswith("P")


def normalize(text):
    out = []
    for ch in text:
        if ord(ch) in (0, 0xFFFD):
            continue
        if ch.isspace():
            out.append(" ")
        elif unicodedata.category(ch).startswith("C"):
            continue
        else:
            out.append(ch)
    text = unicodedata.normalize("NFD", "".join(out).lower())
    return "".join(ch for ch in text if unicodedata.category(ch) != "Mn")


def pre_tokenize(text):
    words = []
    for w in normalize(text).split():
        cur = ""
        for ch in w:
            if _is_punct(ch):
                if cur:
                    words.append(cur)
                    cur = ""
                words.append(ch)
            else:
                cur += ch
        if cur:
            words.append(cur)
    return words


class WordPiece:
    def __init__(self, vocab):
        self.vocab = vocab  # token -> id

    @classmethod
    def build(cls, texts, keep=None):
        """A vocabulary of the texts' words; with `keep` (an earlier tokenizer's token -> id), every
        token it has keeps its id and new ones are appended after them, so that a model trained
        with it can be fine-tuned on a grown vocabulary (train.py copies its embedding rows)."""
        words = set()
        for t in texts:
            words.update(pre_tokenize(t))
        chars = list(string.ascii_lowercase + string.digits)
        punct = [c for c in string.punctuation]
        toks = SPECIALS + chars + punct + ["##" + c for c in chars] + sorted(w for w in words if w not in chars and w not in punct)
        vocab = dict(keep or {})
        for t in toks:
            if t not in vocab:
                vocab[t] = len(vocab)
        return cls(vocab)

    def word_pieces(self, w):
        if len(w) > 100:
            return ["[UNK]"]
        out, start = [], 0
        while start < len(w):
            end, piece = len(w), None
            while start < end:
                sub = w[start:end] if start == 0 else "##" + w[start:end]
                if sub in self.vocab:
                    piece = sub
                    break
                end -= 1
            if piece is None:
                return ["[UNK]"]
            out.append(piece)
            start = end
        return out

    def encode(self, text, max_len=MAX_LEN):
        toks = []
        for w in pre_tokenize(text):
            toks.extend(self.word_pieces(w))
        toks = ["[CLS]"] + toks[: max_len - 2] + ["[SEP]"]
        return [self.vocab[t] for t in toks]

    def save(self, folder):
        os.makedirs(folder, exist_ok=True)
        added = [dict(id=self.vocab[t], content=t, single_word=False, lstrip=False, rstrip=False, normalized=False, special=True) for t in SPECIALS]
        tok = {
            "version": "1.0",
            "truncation": {"direction": "Right", "max_length": MAX_LEN, "strategy": "LongestFirst", "stride": 0},
            "padding": None,
            "added_tokens": added,
            "normalizer": {"type": "BertNormalizer", "clean_text": True, "handle_chinese_chars": True, "strip_accents": None, "lowercase": True},
            "pre_tokenizer": {"type": "BertPreTokenizer"},
            "post_processor": {
                "type": "TemplateProcessing",
                "single": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}, {"SpecialToken": {"id": "[SEP]", "type_id": 0}}],
                "pair": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}, {"SpecialToken": {"id": "[SEP]", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}, {"SpecialToken": {"id": "[SEP]", "type_id": 1}}],
                "special_tokens": {t: {"id": t, "ids": [self.vocab[t]], "tokens": [t]} for t in ("[CLS]", "[SEP]")},
            },
            "decoder": {"type": "WordPiece", "prefix": "##", "cleanup": True},
            "model": {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##", "max_input_chars_per_word": 100, "vocab": self.vocab},
        }
        json.dump(tok, open(os.path.join(folder, "tokenizer.json"), "w"))
        cfg = {"tokenizer_class": "BertTokenizer", "do_lower_case": True, "model_max_length": MAX_LEN,
               "pad_token": "[PAD]", "unk_token": "[UNK]", "cls_token": "[CLS]", "sep_token": "[SEP]", "mask_token": "[MASK]"}
        json.dump(cfg, open(os.path.join(folder, "tokenizer_config.json"), "w"), indent=1)

    @classmethod
    def load(cls, folder):
        return cls(json.load(open(os.path.join(folder, "tokenizer.json")))["model"]["vocab"])
