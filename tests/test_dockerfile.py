"""The Dockerfile parser, variable expansion and what metadata instructions do to a config."""
import pytest

from minidocker import dockerfile as df
from minidocker.buildcontext import Ignore
from minidocker.errors import MinidockerError


def test_parse_joins_continuations_skips_comments_and_keeps_the_first_line_number():
    steps = df.parse("# syntax=docker/dockerfile:1\nFROM busybox AS base\n\nRUN echo a \\\n  # inside\n"
                     "  && echo b\ncopy --from=base /x /y\nCMD [\"sh\", \"-c\", \"date\"]\n")
    assert [(s.cmd, s.line) for s in steps] == [("FROM", 2), ("RUN", 4), ("COPY", 7), ("CMD", 8)]
    assert steps[1].text == "echo a  && echo b"
    assert steps[2].flags == {"from": "base"} and steps[2].text == "/x /y"
    assert steps[3].json == ["sh", "-c", "date"]
    assert df.command(steps[1]) == ["/bin/sh", "-c", "echo a  && echo b"]
    assert df.command(steps[3]) == ["sh", "-c", "date"]


@pytest.mark.parametrize("text, message", [
    ("FROM busybox\nFOO bar\n", "line 2: unknown instruction: FOO"),
    ("FROM busybox\nRUN\n", "line 2: RUN requires at least one argument"),
    ("RUN true\n", "line 1: RUN before the first FROM"),
    ("FROM busybox\nCOPY --chmod=7 a b\n", "line 2: unknown flag: --chmod"),
    ("FROM busybox\n\nONBUILD RUN x\n", "line 3: ONBUILD is not supported"),
    ("FROM busybox\nCMD [1, 2]\n", "line 2: CMD: the exec form must be a JSON list of strings"),
    ("# only a comment\n", "no instructions"),
])
def test_syntax_errors_name_the_line(text, message):
    with pytest.raises(MinidockerError) as e:
        df.parse(text)
    assert message in str(e.value) and e.value.exit_code == 1


def test_expand_knows_docker_forms():
    env = {"A": "1", "E": ""}
    assert df.expand("$A ${A} ${B:-dflt} ${A:+alt} ${B:+alt} ${E:-e} \\$A $B.", env) == "1 1 dflt alt  e $A ."


def test_metadata_instructions_change_the_config():
    c = {"Env": ["PATH=/bin"], "Cmd": ["sh"]}
    for line in ['ENV A=1 B="two words"', "ENV C three words", "LABEL x=1 y=2", "WORKDIR /app",
                 "WORKDIR sub", "USER 1000:1000", "EXPOSE 80 53/udp", "STOPSIGNAL SIGINT"]:
        c = df.apply(c, df.parse_line(line))
    assert c["Env"] == ["PATH=/bin", "A=1", "B=two words", "C=three words"]
    assert c["Labels"] == {"x": "1", "y": "2"} and c["WorkingDir"] == "/app/sub" and c["User"] == "1000:1000"
    assert c["ExposedPorts"] == {"80/tcp": {}, "53/udp": {}} and c["StopSignal"] == "SIGINT"
    assert c["Cmd"] == ["sh"]


def test_entrypoint_resets_an_inherited_cmd_but_not_one_set_in_the_stage():
    base = {"Cmd": ["sh"]}
    assert df.apply(base, df.parse_line('ENTRYPOINT ["top"]'), cmd_set=False)["Cmd"] is None
    assert df.apply(base, df.parse_line('ENTRYPOINT ["top"]'), cmd_set=True)["Cmd"] == ["sh"]
    assert df.apply(base, df.parse_line("ENTRYPOINT top -b"))["Entrypoint"] == ["/bin/sh", "-c", "top -b"]


def test_env_values_expand_earlier_env():
    c = df.apply({"Env": ["A=x"]}, df.parse_line("ENV B=${A}y"))
    assert c["Env"] == ["A=x", "B=xy"]


def test_commit_changes_accept_only_dockers_list():
    assert df.change({}, 'CMD ["a"]')["Cmd"] == ["a"]
    with pytest.raises(MinidockerError, match="RUN is not a valid change command"):
        df.change({}, "RUN true")
    with pytest.raises(MinidockerError, match="EXPOSE: invalid port"):
        df.change({}, "EXPOSE http")


def test_dockerignore_patterns(tmp_path):
    (tmp_path / ".dockerignore").write_text("# comment\n*.log\n**/cache\nbuild/\n!build/keep\n/secret?.txt\n")
    ig = Ignore(tmp_path)
    assert ig.excluded("a.log") and not ig.excluded("dir/a.log")
    assert ig.excluded("cache/x") and ig.excluded("a/b/cache") and ig.excluded("a/b/cache/deep/file")
    assert ig.excluded("build/out.o") and not ig.excluded("build/keep")
    assert ig.excluded("secret1.txt") and not ig.excluded("secret10.txt")
    assert not ig.excluded("src/main.py")
