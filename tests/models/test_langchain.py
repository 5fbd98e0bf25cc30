from __future__ import annotations

import sys
from typing import Any

import pytest
from pydantic import Field

from promptweave.errors import ConfigError, MissingDependency
from promptweave.models import Message, ModelConfig
from promptweave.models import langchain as lcb
from promptweave.models.runtime import ModelRuntime

MSGS = [Message("system", "You translate."), Message("user", "Bonjour"), Message("assistant", "Hello"),
        Message("user", "Merci")]


def test_missing_langchain_gives_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "langchain_core.messages", None)
    with pytest.raises(MissingDependency, match=r"langchain-core .*promptweave\[langchain\]"):
        lcb.create(ModelConfig(backend="langchain", model="x:Y"))


@pytest.mark.parametrize("name, secret", [
    ("api_key", True), ("openai_api_key", True), ("hf_token", True), ("access_token", True),
    ("client_secret", True), ("password", True), ("apikey", True), ("AUTH", True),
    ("max_tokens", False), ("model", False), ("temperature", False), ("base_url", False),
    ("tokenizer", False),
])
def test_secret_names(name, secret):
    assert lcb.is_secret_name(name) is secret


class _Err(Exception):
    def __init__(self, msg: str, status: int | None = None) -> None:
        super().__init__(msg)
        if status is not None:
            self.status_code = status


class RateLimitError(Exception):
    pass


@pytest.mark.parametrize("exc, retryable, status", [
    (_Err("slow down", 429), True, 429),
    (_Err("bad gateway", 502), True, 502),
    (_Err("bad request", 400), False, 400),
    (RateLimitError("quota"), True, None),
    (TimeoutError("read timed out"), True, None),
    (ConnectionResetError("reset"), True, None),
    (ValueError("nonsense"), False, None),
])
def test_exception_mapping(exc, retryable, status):
    err = lcb.to_backend_error(exc)
    assert err.retryable is retryable and err.status == status
    assert type(exc).__name__ in str(err)


# ---------------------------------------------------------------- with langchain-core installed

try:
    from langchain_core.language_models.chat_models import BaseChatModel as LCBase
    from langchain_core.messages import AIMessage
    from langchain_core.outputs import ChatGeneration, ChatResult
except ImportError:  # the tests above still run
    LCBase = object  # type: ignore[assignment,misc]
    HAVE_LC = False
else:
    HAVE_LC = True

needs_lc = pytest.mark.skipif(not HAVE_LC, reason="langchain-core is not installed (extra 'langchain')")


class Recorder(LCBase):  # type: ignore[valid-type,misc]
    """Answers ``reply`` and remembers what it was sent; fails ``fail`` times first."""

    reply: str = "Thanks"
    fail: int = 0
    fail_status: int = 503
    api_key: str = ""
    seen: list[Any] = Field(default_factory=list)

    @property
    def _llm_type(self) -> str:
        return "recorder"

    def _generate(self, messages, stop=None, run_manager=None, **kwargs):
        self.seen.append({"messages": messages, "stop": stop, **kwargs})
        if self.fail > 0:
            self.fail -= 1
            raise _Err("server unavailable", self.fail_status)
        msg = AIMessage(content=self.reply, usage_metadata={"input_tokens": 11, "output_tokens": 2,
                                                            "total_tokens": 13},
                        response_metadata={"finish_reason": "stop"})
        return ChatResult(generations=[ChatGeneration(message=msg)])


RECORDER = f"{__name__}:Recorder"


def _runtime(options: dict[str, Any], **cfg: Any) -> ModelRuntime:
    config = ModelConfig(backend="langchain", model=RECORDER, options=options, backoff_base=0.0, **cfg)
    return ModelRuntime(config, lcb.create(config))


@needs_lc
async def test_roles_usage_and_params_reach_the_langchain_model():
    rt = _runtime({"kwargs": {"reply": "Thank you", "seen": []}}, temperature=0.3, max_tokens=7,
                  stop=["\n"])
    result = await rt.chat(MSGS)
    assert result.ok and result.text == "Thank you"
    assert (result.prompt_tokens, result.completion_tokens, result.finish_reason) == (11, 2, "stop")
    call = rt.backend.chat_model.seen[0]
    assert [type(m).__name__ for m in call["messages"]] == ["SystemMessage", "HumanMessage", "AIMessage",
                                                            "HumanMessage"]
    assert [m.content for m in call["messages"]] == ["You translate.", "Bonjour", "Hello", "Merci"]
    assert call["stop"] == ["\n"] and call["temperature"] == 0.3 and call["max_tokens"] == 7


@needs_lc
async def test_pass_params_off_sends_only_stop():
    rt = _runtime({"kwargs": {"seen": []}, "pass_params": False})
    await rt.chat(MSGS)
    assert set(rt.backend.chat_model.seen[0]) == {"messages", "stop"}


@needs_lc
async def test_server_errors_are_retried_client_errors_are_not():
    rt = _runtime({"kwargs": {"fail": 2, "seen": []}}, max_retries=3)
    ok = await rt.chat(MSGS)
    assert ok.ok and ok.attempts == 3 and rt.ledger.retries == 2
    rt = _runtime({"kwargs": {"fail": 1, "fail_status": 400, "seen": []}}, max_retries=3)
    bad = await rt.chat(MSGS)
    assert not bad.ok and bad.attempts == 1 and "HTTP 400" in (bad.error or "")


@needs_lc
def test_identity_drops_secrets_and_keeps_sampling_kwargs():
    backend = lcb.create(ModelConfig(backend="langchain", model=RECORDER,
                                     options={"kwargs": {"api_key": "sk-secret", "reply": "x"}}))
    assert backend.identity == {"backend": "langchain", "model": RECORDER, "kwargs": {"reply": "x"}}
    assert "sk-secret" not in repr(backend.identity)


@needs_lc
async def test_fake_list_chat_model_by_class_path():
    cfg = ModelConfig(backend="langchain",
                      model="langchain_core.language_models.fake_chat_models:FakeListChatModel",
                      options={"kwargs": {"responses": ["Hallo Welt"]}})
    rt = ModelRuntime(cfg, lcb.create(cfg))
    result = await rt.chat([Message("user", "Hello world")])
    assert result.ok and result.text == "Hallo Welt"


@needs_lc
@pytest.mark.parametrize("model, match", [
    ("nosuchmodule_xyz:Chat", "cannot import"),
    ("langchain_core.messages:NoSuchClass", "cannot import"),
    ("ChatOpenAI", "not a class path"),
])
def test_bad_class_path_is_a_config_error(model, match):
    with pytest.raises(ConfigError, match=match):
        lcb.create(ModelConfig(backend="langchain", model=model))


@needs_lc
def test_bad_constructor_kwargs_are_a_config_error():
    with pytest.raises(ConfigError, match="cannot create"):
        lcb.create(ModelConfig(backend="langchain", model=RECORDER, options={"kwargs": {"fail": "many"}}))


@needs_lc
@pytest.mark.embedded
async def test_chat_openai_against_llama_server(llama_server):
    pytest.importorskip("langchain_openai", reason="langchain-openai is not installed")
    cfg = ModelConfig(backend="langchain", model="langchain_openai:ChatOpenAI", max_tokens=16,
                      options={"kwargs": {"base_url": llama_server, "api_key": "EMPTY", "model": "x",
                                          "max_retries": 0}})
    rt = ModelRuntime(cfg, lcb.create(cfg))
    result = await rt.chat([Message("user", "Translate into French: good morning")])
    assert result.ok and result.text and result.completion_tokens > 0
    assert "EMPTY" not in repr(rt.identity)
