"""lens.engine.errors: error codes and the redaction of error samples."""
from __future__ import annotations

from lens.engine import errors as E


def test_every_code_has_one_name():
    codes = [v for k, v in vars(E).items() if k.isupper() and isinstance(v, int)
             and k not in ("SAMPLE_MAX",)]
    assert sorted(codes) == sorted(E.ERROR_NAMES) == list(range(len(codes)))
    assert len(set(E.ERROR_NAMES.values())) == len(codes)


def test_the_run_key_is_redacted_wherever_it_is():
    key = "zz-custom-key-0123456789"
    text = f'{{"error": "bad key {key}", "echo": "{key}"}}'
    assert E.redact(text, [key]) == '{"error": "bad key ***", "echo": "***"}'


def test_a_key_cut_at_the_excerpt_end_is_redacted():
    key = "zz-custom-key-0123456789"
    assert E.redact("... you sent zz-custom-k", [key]) == "... you sent ***"
    assert E.redact("... ends with zz-", [key]) == "... ends with zz-"   # 3 characters: kept


def test_credential_shapes_are_redacted_whatever_the_key():
    text = ("Incorrect API key provided: sk-proj-ABCDEFGH1234. Authorization: Bearer "
            "eyJhbGciOiJIUzI1NiJ9.x ?key=AIzaSyD-0123456789&alt=sse \"api_key\": \"q1w2e3r4t5\"")
    assert E.redact(text) == ('Incorrect API key provided: sk-***. Authorization: Bearer *** '
                              '?key=***&alt=sse "api_key": "***"')
    for harmless in ("monkey: 1234567890", "keyboard layout", "sk-short", "Bearer of news"):
        assert E.redact(harmless) == harmless


def test_samples_are_capped():
    assert len(E.redact("x" * 5000)) == E.SAMPLE_MAX == 512
