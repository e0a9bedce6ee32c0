"""4lw.commands.whitelist: ZooKeeper 3.8's default (srvr only), its exact refusal, and the same against ZooKeeper."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from node.admin.four_letter import DEFAULT_WHITELIST, WORDS, ZK_WORDS, not_whitelisted, parse_whitelist
from node.config import ConfigError, NodeConfig, load_config, parse_zoo_cfg
from node.server import BackgroundNode
from tests.node.servers import four_letter_word, free_port, zookeeper_installed, zookeeper_standalone


def test_parse_whitelist() -> None:
    assert DEFAULT_WHITELIST == {"srvr"}
    assert parse_whitelist("*") == ZK_WORDS
    assert parse_whitelist(" ruok , mntr,,") == {"ruok", "mntr", "srvr"}  # srvr always, as in ZooKeeper
    with pytest.raises(ValueError, match="unknown four-letter word.*nope.*allowed: \\* or"):
        parse_whitelist("ruok,nope")


def test_whitelist_from_zoo_cfg_and_its_errors() -> None:
    values, ignored = parse_zoo_cfg("4lw.commands.whitelist: stat, ruok\n")
    assert values == {"four_letter_words": frozenset({"stat", "ruok", "srvr"})} and ignored == []
    with pytest.raises(ConfigError, match="zoo.cfg:1: 4lw.commands.whitelist='ruk'.*unknown four-letter word"):
        parse_zoo_cfg("4lw.commands.whitelist=ruk\n", "zoo.cfg")
    cfg, _ = load_config(None, {"data_dir": Path("/x")})
    assert cfg.four_letter_words == {"srvr"}
    with pytest.raises(ConfigError, match="4lw whitelist"):
        NodeConfig(data_dir=Path("/x"), four_letter_words=frozenset({"nope"})).validate()


def _replies(port: int) -> dict[str, str]:
    return {w: four_letter_word("127.0.0.1", port, w) for w in sorted(WORDS - {"srst", "crst"})}


def test_the_default_answers_srvr_only(tmp_path: Path) -> None:
    cfg = NodeConfig(data_dir=tmp_path, port=free_port(), tick_ms=100).validate()
    with BackgroundNode(cfg):
        replies = _replies(cfg.port)
    assert replies["srvr"].startswith("Zookeeper version: ") and "Mode: standalone\n" in replies["srvr"]
    for word, text in replies.items():
        if word != "srvr":
            assert text == f"{word} is not executed because it is not in the whitelist.\n", word


def test_a_whitelist_enables_exactly_its_words(tmp_path: Path) -> None:
    cfg = NodeConfig(
        data_dir=tmp_path, port=free_port(), tick_ms=100, four_letter_words=parse_whitelist("ruok,mntr")
    ).validate()
    with BackgroundNode(cfg):
        replies = _replies(cfg.port)
    assert replies["ruok"] == "imok" and "zk_znode_count\t" in replies["mntr"] and "Mode:" in replies["srvr"]
    assert replies["stat"] == not_whitelisted("stat") and replies["conf"] == not_whitelisted("conf")


@pytest.mark.slow
@pytest.mark.integration
def test_refusals_match_zookeeper(tmp_path: Path) -> None:
    """With the same whitelists, ZooKeeper 3.8 and the node refuse the same words with the same bytes."""
    if not zookeeper_installed():
        pytest.skip("Apache ZooKeeper is not installed")
    for whitelist in (None, "ruok,mntr"):
        zk = zookeeper_standalone(tmp_path / f"zk-{whitelist}", tick_ms=100)
        cfg_path = tmp_path / f"zk-{whitelist}" / "zoo.cfg"
        text = cfg_path.read_text().replace("4lw.commands.whitelist=*\n", "")
        cfg_path.write_text(text + (f"4lw.commands.whitelist={whitelist}\n" if whitelist else ""))
        ours = NodeConfig(
            data_dir=tmp_path / f"sq-{whitelist}",
            port=free_port(),
            tick_ms=100,
            four_letter_words=parse_whitelist(whitelist) if whitelist else DEFAULT_WHITELIST,
        ).validate()
        try:
            _start_polling_srvr(zk)
            theirs = _replies(zk.port)
            with BackgroundNode(ours):
                mine = _replies(ours.port)
        finally:
            zk.stop()
        for word in mine:
            refused = theirs[word] == not_whitelisted(word)
            assert refused == (mine[word] == not_whitelisted(word)), (whitelist, word, theirs[word], mine[word])
            if refused:
                assert mine[word] == theirs[word]


def _start_polling_srvr(zk) -> None:
    """Start a ZooKeeper whose whitelist may refuse ruok (ServerProcess.start waits on ruok)."""
    import subprocess

    zk.log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(zk.log_path, "ab") as log:
        zk.proc = subprocess.Popen(
            zk.argv, cwd=zk.cwd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if "Mode: standalone" in four_letter_word(zk.host, zk.port, "srvr", timeout=1.0):
                return
        except OSError:
            pass
        time.sleep(0.1)
    zk.stop()
    raise RuntimeError(f"ZooKeeper did not serve within 60 s; log tail:\n{zk.log_tail()}")
