"""zoo.cfg is read as a Java properties file (java.util.Properties.load syntax), keys and values trimmed."""

from __future__ import annotations

from pathlib import Path

import pytest

from node.config import ConfigError, load_config, parse_properties, parse_zoo_cfg


def pairs(text: str) -> list[tuple[str, str]]:
    return [(k, v) for _, k, v in parse_properties(text)]


def test_the_three_separators() -> None:
    assert pairs("a=1\nb: 2\nc 3\nd\t=\t4\ne :5\n") == [("a", "1"), ("b", "2"), ("c", "3"), ("d", "4"), ("e", "5")]


def test_only_the_first_separator_splits() -> None:
    assert pairs("server.1=h:2888:3888;2181\nk = a=b\n") == [("server.1", "h:2888:3888;2181"), ("k", "a=b")]


def test_comments_and_blank_lines() -> None:
    assert pairs("# hash\n! bang\n   # indented\n\n \t\nk=v # not a comment\n") == [("k", "v # not a comment")]


def test_line_continuations() -> None:
    text = "dataDir=/var/\\\n      lib/zk\nk=a\\\\\nz=1\nlast=x\\"
    # one backslash continues (the next line's indent dropped); two are an escaped backslash; a final one is dropped
    assert pairs(text) == [("dataDir", "/var/lib/zk"), ("k", "a\\"), ("z", "1"), ("last", "x")]


def test_a_comment_line_does_not_continue() -> None:
    assert pairs("# note \\\nk=v\n") == [("k", "v")]


def test_escapes() -> None:
    assert pairs("a=\\u0041\\tB\\n\nmy\\ key=v\nc\\:d=e\nq=\\q\n") == [
        ("a", "A\tB"),
        ("my key", "v"),
        ("c:d", "e"),
        ("q", "q"),
    ]
    with pytest.raises(ConfigError, match=r"config:1: malformed \\uXXXX escape.*4 hex digits"):
        parse_properties("a=\\u12G4\n")


def test_crlf_and_cr_line_ends() -> None:
    assert pairs("a=1\r\nb=2\rc=3") == [("a", "1"), ("b", "2"), ("c", "3")]


def test_a_key_without_value_and_the_last_duplicate_wins() -> None:
    values, ignored = parse_zoo_cfg("standaloneEnabled\nclientPort=1\nclientPort: 2\n")
    assert values == {"port": 2} and ignored == ["standaloneEnabled"]


def test_bad_values_name_the_key_and_line() -> None:
    with pytest.raises(ConfigError, match=r"zoo.cfg:2: clientPort='x' is not a valid int"):
        parse_zoo_cfg("tickTime 100\nclientPort: x\n", "zoo.cfg")
    with pytest.raises(ConfigError, match="no key"):
        parse_zoo_cfg("= 5\n")


def test_a_real_zookeeper_style_file(tmp_path: Path) -> None:
    cfg = tmp_path / "zoo.cfg"
    cfg.write_text(
        "! ZooKeeper-style\ntickTime: 100\nclientPort 2999\ndataDir = " + str(tmp_path / "d") + "\n"
        "maxClientCnxns=\\\n   7\nserver.1=127.0.0.1:3001:3888;2999\n4lw.commands.whitelist=srvr, ruok\n"
    )
    config, ignored = load_config(cfg, {})
    assert (config.tick_ms, config.port, config.max_client_cnxns) == (100, 2999, 7)
    assert config.data_dir == tmp_path / "d" and config.peers == "1=127.0.0.1:2999:3001:3888"


JAVA_DUMP = """
import java.io.FileReader;
import java.util.Properties;
import java.util.TreeSet;

public class Dump {
    public static void main(String[] args) throws Exception {
        Properties p = new Properties();
        try (FileReader r = new FileReader(args[0], java.nio.charset.StandardCharsets.UTF_8)) { p.load(r); }
        for (String k : new TreeSet<>(p.stringPropertyNames())) {
            System.out.println(hex(k.trim()) + " " + hex(p.getProperty(k).trim()));
        }
    }
    static String hex(String s) {
        StringBuilder b = new StringBuilder("x");
        for (char c : s.toCharArray()) b.append(String.format("%04x", (int) c));
        return b.toString();
    }
}
"""

TRICKY = (
    "# comment\n! bang comment\n  a = 1\nb:2\nc 3\nd\t\t4\ne=\n  f  \ng = x = y\nh : a:b\n"
    "i=one \\\n    two \\\n\tthree\nj=\\\\\nk=\\u00e9\\t\\n\\r\\f\\z\nl\\ m=n\no\\:p=q\nr\\=s=t\n"
    "# cont \\\nu=v\nw=trailing   \nx=\\\n\ny=last\r\nz=cr\rzz=end\\"
)


@pytest.mark.slow
def test_the_parser_agrees_with_java_properties_load(tmp_path: Path) -> None:
    """The same tricky file through java.util.Properties.load (keys and values trimmed, as ZooKeeper does)."""
    import shutil
    import subprocess

    java = shutil.which("java")
    if java is None:
        pytest.skip("no java on PATH")
    (tmp_path / "Dump.java").write_text(JAVA_DUMP)
    (tmp_path / "t.properties").write_text(TRICKY, encoding="utf-8", newline="")
    out = subprocess.run(
        [java, str(tmp_path / "Dump.java"), str(tmp_path / "t.properties")],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout

    def unhex(h: str) -> str:
        return "".join(chr(int(h[i : i + 4], 16)) for i in range(1, len(h), 4))

    theirs = dict(tuple(unhex(part) for part in line.split(" ")) for line in out.splitlines())
    ours = {k: v for _, k, v in parse_properties(TRICKY)}
    assert ours == theirs
    assert len(theirs) == 20  # every line above made it through both
