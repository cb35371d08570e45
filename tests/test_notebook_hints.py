"""The catalogue's hints reach the learner one at a time (grader.hint), as rustlings' `hint` does."""
from polyglot_lab.notebook import Notebook


def test_each_call_reveals_the_next_hint_and_the_last_one_stays(capsys, catalogue):
    hints = catalogue["01_keras_prototype"].exercise("split").hints
    assert len(hints) >= 2
    grader = Notebook("01_keras_prototype")
    for i, hint in enumerate(hints, start=1):
        grader.hint("split")
        said = capsys.readouterr().out
        assert f"hint {i} of {len(hints)}: {hint}" in said
        assert all(other not in said for other in hints if other != hint)
    grader.hint("split")
    again = capsys.readouterr().out
    assert f"hint {len(hints)} of {len(hints)}: {hints[-1]}" in again and "the last one" in again
