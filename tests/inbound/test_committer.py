"""The group committer on its own: who runs a batch, what forms one, and each caller's answer."""
from __future__ import annotations

import threading

import pytest

from gateway.inbound.committer import GroupCommitter
from tests.conftest import wait_until


def _submit_in_threads(committer, items):
    answers: dict = {}

    def submit(item):
        try:
            answers[item] = ("ok", committer.submit(item))
        except Exception as exc:  # the caller's answer
            answers[item] = ("error", exc)

    threads = []
    for n, item in enumerate(items, start=1):
        thread = threading.Thread(target=submit, args=(item,))
        thread.start()
        threads.append(thread)
        wait_until(lambda n=n: committer.queued() >= n or len(answers) >= n, timeout=10, message=f"item {n} queued")
    return threads, answers


def test_a_lone_item_is_its_own_batch():
    batches = []
    committer = GroupCommitter(lambda items: batches.append(list(items)) or [f"done {i}" for i in items])
    assert committer.submit("a") == "done a"
    assert batches == [["a"]]


def test_items_queued_while_a_batch_is_held_go_as_one_batch_each_with_its_own_answer():
    batches = []
    committer = GroupCommitter(lambda items: batches.append(list(items)) or [f"done {i}" for i in items])
    with committer.hold:
        threads, answers = _submit_in_threads(committer, ["a", "b", "c"])
    for thread in threads:
        thread.join(10)
    assert batches == [["a", "b", "c"]]
    assert answers == {"a": ("ok", "done a"), "b": ("ok", "done b"), "c": ("ok", "done c")}


def test_items_arriving_while_a_batch_commits_form_the_next_one_led_by_the_first_of_them():
    running, release = threading.Event(), threading.Event()
    batches = []

    def run_batch(items):
        batches.append((list(items), threading.current_thread().name))
        if items == ["a"]:
            running.set()
            release.wait(10)
        return [i.upper() for i in items]

    committer = GroupCommitter(run_batch)
    first = threading.Thread(target=committer.submit, args=("a",), name="a")
    first.start()
    assert running.wait(10)
    answers: dict = {}
    later = [threading.Thread(target=lambda i=i: answers.setdefault(i, committer.submit(i)), name=i) for i in "bcd"]
    for n, thread in enumerate(later, start=1):
        thread.start()
        wait_until(lambda n=n: committer.queued() == n, timeout=10, message="the next items to queue")
    release.set()
    for thread in (first, *later):
        thread.join(10)
    assert batches == [(["a"], "a"), (["b", "c", "d"], "b")]
    assert answers == {"b": "B", "c": "C", "d": "D"}


def test_an_error_for_one_item_reaches_only_its_caller_and_a_failed_batch_reaches_all():
    failing = {"batch": False}

    def run_batch(items):
        if failing["batch"]:
            raise RuntimeError("the batch failed")
        return [ValueError(f"bad {i}") if i == "bad" else i for i in items]

    committer = GroupCommitter(run_batch)
    with committer.hold:
        threads, answers = _submit_in_threads(committer, ["good", "bad"])
    for thread in threads:
        thread.join(10)
    assert answers["good"] == ("ok", "good")
    assert answers["bad"][0] == "error" and str(answers["bad"][1]) == "bad bad"

    failing["batch"] = True
    with committer.hold:
        threads, answers = _submit_in_threads(committer, ["x", "y"])
    for thread in threads:
        thread.join(10)
    assert {kind for kind, _value in answers.values()} == {"error"}
    with pytest.raises(RuntimeError):
        committer.submit("z")  # and the committer still runs the next batch
    failing["batch"] = False
    assert committer.submit("w") == "w"


def test_a_batch_is_at_most_max_batch_items():
    batches = []
    committer = GroupCommitter(lambda items: batches.append(len(items)) or list(items), max_batch=2)
    with committer.hold:
        threads, _answers = _submit_in_threads(committer, ["a", "b", "c", "d", "e"])
    for thread in threads:
        thread.join(10)
    assert batches == [2, 2, 1]
