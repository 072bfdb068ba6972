"""Red-team regressions for the program sandbox: hostile programs that once got through
(docs/sandbox.md, "What it protects against"). Each test runs the real sandbox path the runner
and the rewards use (``ProgramExecutor.execute``) against the fake modules of test_sandbox."""

from __future__ import annotations

import textwrap
import time

import pytest

from inference.sandbox import ProgramExecutor, SandboxLimits
from tests.inference.test_sandbox import CHOICES, FakeModules, fake_world

LIMITS = SandboxLimits(cpu_time_s=1, wall_time_s=4, memory_bytes=512 << 20, max_stdout_chars=2_000,
                       max_module_calls=50, max_error_chars=2_000)


def program(body: str) -> str:
    return "def execute_command(video, question):\n" + textwrap.indent(textwrap.dedent(body), "    ")


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory):
    video, clip_dir = fake_world(tmp_path_factory.mktemp("redteam"))
    modules = FakeModules(clip_dir)
    # One worker: every program runs in the same reused process, as a GRPO group's samples can.
    with ProgramExecutor(modules.functions(), limits=LIMITS, workers=1) as executor:
        yield {"executor": executor, "video": str(video), "clip_dir": clip_dir, "modules": modules}


def run(sandbox, code: str, executor: ProgramExecutor | None = None):
    return (executor or sandbox["executor"]).execute(
        code, video=sandbox["video"], question="What vegetables were on the book?", choices=CHOICES,
        duration=120.0, allowed_roots=[str(sandbox["clip_dir"])])


VICTIM = program("""
    junk = [[i] for i in range(200000)]  # allocates: the collector runs during this program
    return query_native(video, question, choices)
""")


# ------------------------------------------------------------------ state left for the next program
# A suspended generator's ``finally`` is program code that runs when the generator is finalized.
# Kept alive past the program's end (stashed where the worker still holds it, or promoted to the
# collector's oldest generation), it used to run during the *next* program in the same worker:
# spending that program's CPU time (its record: CPUTimeLimitExceeded) or calling modules in its
# execution. In GRPO that sabotages a sibling sample, which raises the saboteur's advantage.
SABOTEUR = """
    def spin():
        box = [None]
        try:
            yield box
        finally:
            while True:
                pass
    it = spin()
    box = next(it)
    {stash}
    return make_result('A', 0.5)
"""
STASHES = {
    "on-the-ModuleError-class": "ModuleError.keep = it",
    "in-the-choices-global": "choices.append(it)",
    "in-a-cycle-promoted-to-the-oldest-generation": "box[0] = it\njunk = [[i] for i in range(50000)]",
}


@pytest.mark.parametrize("stash", list(STASHES))
def test_a_finalizer_left_behind_runs_in_its_own_program(sandbox, stash):
    code = program(SABOTEUR.format(stash=STASHES[stash].replace("\n", "\n    ")))
    saboteur = run(sandbox, code)
    # The finalizer ran inside the saboteur's own limits: its record, not the next one's.
    assert not saboteur.success and saboteur.error_type in {"CPUTimeLimitExceeded", "WallTimeLimitExceeded"}, \
        (saboteur.error_type, saboteur.error_message)
    assert saboteur.host_error is None
    for _ in range(2):
        victim = run(sandbox, VICTIM)
        assert victim.success, victim.error_log()
        assert victim.host_error is None and [c.name for c in victim.module_calls] == ["query_native"]


def test_a_finalizer_that_calls_modules_is_charged_to_its_own_program(sandbox):
    code = program("""
        def later(call=broken):
            try:
                yield 1
            finally:
                call()
        it = later()
        next(it)
        ModuleError.keep = it
        return make_result('A', 0.5)
    """)
    saboteur = run(sandbox, code)
    assert [c.name for c in saboteur.module_calls] == ["make_result", "broken"]
    victim = run(sandbox, VICTIM)
    assert victim.success and victim.host_error is None, victim.error_log()
    assert [c.name for c in victim.module_calls] == ["query_native"]



# ------------------------------------------------------------------ the host reading the answer
def test_an_answer_built_to_backtrack_costs_the_host_nothing(sandbox):
    """``extract_letter``'s patterns backtracked in cubic time on long whitespace runs: this
    answer (1,500 spaces) held the host's GIL for ~15 s, 4,000 spaces for minutes."""
    start = time.perf_counter()
    record = run(sandbox, program("return make_result('answer' + ' ' * 1500 + '!', 0.5)"))
    assert record.error_type == "InvalidResult"
    record = run(sandbox, program("return make_result('The answer is' + ' ' * 1500 + '(C)', 0.5)"))
    assert record.success and record.result.answer == "C"
    assert time.perf_counter() - start < 5.0


@pytest.mark.parametrize("answer,letter", [
    ("The answer is  (D)", "D"), ("answer:\t\t\t\tB", "B"), ("A  b", None), ("A   b", None), ("A b", None),
    ("  (B)   ", "B"), ("Option\n\n\n\nC.", "C")])
def test_whitespace_runs_read_by_the_shared_rule(answer, letter):
    from inference.confidence import extract_letter
    from inference.sandbox import InvalidResult, coerce_answer

    assert extract_letter(answer, 4) == letter  # the sandbox reads answers by the shared rule
    if letter is None:
        with pytest.raises(InvalidResult):
            coerce_answer(answer, ["w", "x", "y", "z"])
    else:
        assert coerce_answer(answer, ["w", "x", "y", "z"]).answer == letter


# ------------------------------------------------------------------ floods
def test_a_bulk_result_is_refused(sandbox):
    """15 MB of metadata used to pass (only the 16 MiB message limit applied) and land in the
    record, in every log and in the rollout files that keep records."""
    record = run(sandbox, program("""
        return {'answer': 'A', 'confidence': 0.5, 'metadata': {str(i): 'x' * 900000 for i in range(15)}}
    """))
    assert record.error_type == "InvalidResult" and "characters of data" in record.error_message
    record = run(sandbox, program("return {'answer': 'A', 'confidence': 0.5, 'metadata': {'ocr': 'x' * 100000}}"))
    assert record.success, record.error_log()


def test_oversized_arguments_are_refused_in_the_worker_and_calls_stop_after_a_violation(sandbox):
    """Each refused 15 MB call cost the host ~0.1 s of CPU (decoding, summarising) and the
    program could swallow the violation and repeat it up to max_module_calls times."""
    import resource

    def host_cpu() -> float:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime

    before = host_cpu()
    record = run(sandbox, program("""
        s = 'x' * 999999
        for i in range(40):
            try:
                run_ocr(s, s, s, s, s, s, s, s, s, s, s, s, s, s, s)
            except:
                pass
        return 'A'
    """))
    assert record.error_type == "SandboxViolation" and "argument too large" in record.error_message
    assert record.module_calls == []  # nothing reached the host
    assert host_cpu() - before < 0.5
    record = run(sandbox, program("""
        try:
            extract_frames('/etc/passwd')
        except:
            pass
        return make_result('A', 0.5)
    """))
    assert record.error_type == "SandboxViolation" and [c.name for c in record.module_calls] == ["extract_frames"]


def test_a_limit_hit_while_a_message_is_on_the_channel_is_named_as_that_limit():
    """Hit during a large module call's send, the limit used to read 'exited unexpectedly with
    status 6'; the worker now exits with a status per limit."""
    from inference.sandbox import worker
    from inference.sandbox.host import _crash_record

    assert _crash_record(worker.EXIT_CPU_LIMIT, LIMITS)[0] == "CPUTimeLimitExceeded"
    assert _crash_record(worker.EXIT_WALL_LIMIT, LIMITS)[0] == "WallTimeLimitExceeded"


# ------------------------------------------------------------------ violations the worker lost
# At the recursion limit, recording a violation in the worker (a traceback walk) can itself raise
# RecursionError, which the program catches as an ordinary exception and carries on: the refused
# call stays refused, but the record could end as a success. The host remembers every call it
# refused, so it no longer depends on the worker's bookkeeping (nor on an honest worker).
FORGETFUL_BOOT = ("import sys; sys.path.insert(0, sys.argv[1]); del sys.argv[1]; "
                  "from inference.sandbox import worker; "
                  "worker.ProgramRun.violate = lambda self, kind, message: (_ for _ in ()).throw(RecursionError()); "
                  "worker.main()")


def test_a_violation_the_worker_did_not_record_still_fails_the_program(sandbox, monkeypatch):
    from inference.sandbox import host

    monkeypatch.setattr(host, "_BOOT", FORGETFUL_BOOT)
    with ProgramExecutor(sandbox["modules"].functions(), limits=LIMITS, workers=1) as executor:
        code = program("""
            try:
                extract_frames('/etc/passwd', 1)
            except RecursionError:
                pass
            return make_result('A', 0.5)
        """)
        record = run(sandbox, code, executor)
        assert not record.success and record.error_type == "SandboxViolation", record.error_log()
        assert "/etc/passwd" in record.error_message and record.host_error is None
        started = executor.workers_started
        assert run(sandbox, program("return make_result('A', 0.5)"), executor).success
        assert executor.workers_started == started + 1  # the forgetful worker was not reused


# ------------------------------------------------------------------ crashes
def test_a_c_stack_overflow_is_the_programs_fault_and_the_pool_recovers(sandbox):
    """Hashing a tuple nested a million deep recurses in C with no recursion check (CPython
    3.11): the worker dies of SIGSEGV. That is the program's doing (no host error, so a
    bug-fix round and reward 0, never a skipped sample) and the next program gets a fresh worker."""
    executor = sandbox["executor"]
    assert run(sandbox, program("return make_result('A', 0.5)")).success  # a worker is up
    started = executor.workers_started
    record = run(sandbox, program("""
        x = ()
        for i in range(10 ** 6):
            x = (x,)
        return make_result('A', 0.5, str(hash(x)))
    """))
    assert not record.success and record.error_type == "WorkerCrashed" and "SIGSEGV" in record.error_message
    assert record.host_error is None
    after = run(sandbox, program("return query_native(video, question, choices)"))
    assert after.success and executor.workers_started == started + 1
