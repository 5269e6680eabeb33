"""What every command shares: one-line user errors with exit code 2, ``--debug`` tracebacks, a ``--help`` that opens
with the command's purpose and an example, and no library noise that does not concern the user.

    def main(argv: list[str]) -> int: ...

    if __name__ == "__main__":
        sys.exit(run_command(main, COMMAND, make_parser))

A user error is a mistake the user can fix: a missing or unreadable file, a bad config value, an unknown key, an unset
key variable, an unreachable endpoint, a bad input record. It is printed as ``COMMAND: error: WHAT`` on one line of
stderr (the message names the file, line, key or URL) and the command exits 2. ``--debug`` or ``LOGLEVEL=DEBUG`` add
the traceback. Any other exception is a bug and keeps its traceback.
"""

import argparse
import io
import logging
import os
import sys
import traceback
from collections.abc import Callable
from contextlib import contextmanager, redirect_stdout
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
USER_ERROR_EXIT = 2


class UserError(Exception):
    """A mistake the user can fix; the message names what and where (file, line, key, URL)."""


# Our modules' exceptions for user mistakes, by qualified name, so that this module imports none of them (torch, trl).
USER_ERROR_NAMES = {
    "data_pipeline.config.ConfigError",
    "data_pipeline.records.InputError",
    "core.llm.base.LLMRequestError",
    "eval.hhh.testsets.EvalInputError",
    "eval.benchmarks.tasks.BenchmarkInputError",
    "train.data.DatasetGuardError",
    "yaml.error.YAMLError",
    "json.decoder.JSONDecodeError",
}


@dataclass
class Command:
    """How a command introduces itself: ``--help`` starts with ``purpose`` and ``example``; a command that takes a
    YAML (``config_dir``) and is run without arguments says so and names the example configs."""

    name: str  # as typed: "python -m train.sft"
    purpose: str
    example: str
    config_dir: str | None = None  # e.g. "configs/train": the command's runs are described by YAMLs there
    check: bool = False  # the command has a preflight (--check)

    def header(self) -> str:
        return f"{self.purpose}\n\nexample:\n  {self.example}\n\n"

    def no_arguments(self) -> str:
        configs = sorted(str(p.relative_to(REPO_ROOT)) for p in (REPO_ROOT / self.config_dir).rglob("*.yaml"))
        return (
            f"{self.name}: one YAML carries every setting of a run: {self.name} --config FILE.yaml "
            f"[--key value ...] (flags override it; --help lists them). Example configs: {', '.join(configs)}"
        )


def is_user_error(error: BaseException) -> bool:
    if isinstance(error, UserError | OSError | UnicodeDecodeError):
        return True
    return any(f"{cls.__module__}.{cls.__qualname__}" in USER_ERROR_NAMES for cls in type(error).__mro__)


def one_line(error: BaseException) -> str:
    """The error as one line: ``PATH: reason`` for file errors, the message (lines joined by '; ') otherwise."""
    if isinstance(error, OSError) and error.filename is not None and error.strerror:
        return f"{error.filename}: {error.strerror}"
    text = str(error) or type(error).__name__
    if isinstance(error, KeyError):  # str(KeyError) quotes its argument
        text = str(error.args[0]) if error.args else text
    return "; ".join(line.strip() for line in text.splitlines() if line.strip())


def _usage_error(parser: argparse.ArgumentParser, message: str):
    raise UserError(f"{message} (see --help)")


class _DropOptionalKernelWarning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "from kernels-community" not in record.getMessage()


def quiet_library_noise() -> None:
    """Silence library warnings that do not concern the user: bitsandbytes' "Failed to load CPU gemm_4bit_forward
    from kernels-community" (an optional package, 'kernels'; the plain CPU path works). Called from each package's
    __init__, i.e. before any entry point imports torch or bitsandbytes."""
    logger = logging.getLogger("bitsandbytes.backends.cpu.ops")
    if not any(isinstance(f, _DropOptionalKernelWarning) for f in logger.filters):
        logger.addFilter(_DropOptionalKernelWarning())


def quiet_transformers_banner() -> None:
    """transformers prints "[INFO] Running in WANDB offline mode" to stdout when its W&B integration is imported with
    WANDB_MODE=offline (tests, the demo): import it once with stdout captured. For packages that load transformers
    anyway (train/); the data pipeline keeps its imports light."""
    if os.environ.get("WANDB_MODE") == "offline" and "transformers.integrations.integration_utils" not in sys.modules:
        with redirect_stdout(io.StringIO()):
            import transformers.integrations.integration_utils  # noqa: F401


@contextmanager
def config_errors(config: str | None):
    """A ValueError/TypeError while parsing a config (an unknown key, a bad value) becomes a user error naming the
    config file."""
    try:
        yield
    except (ValueError, TypeError) as error:
        if is_user_error(error):
            raise
        where = f"{config}: " if config and config not in str(error) else ""
        raise UserError(f"{where}{one_line(error)}") from error


def use_output_dir_for_wandb(output_dir: str | Path) -> None:
    """W&B writes its run files under $WANDB_DIR/wandb, by default the working directory: keep them with the run
    (a ./wandb/ in the checkout would also be taken for a package by ruff). An explicit WANDB_DIR wins."""
    Path(output_dir).mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("WANDB_DIR", str(output_dir))


def config_path(argv: list[str]) -> str | None:
    return argv[argv.index("--config") + 1] if "--config" in argv[:-1] else None


def help_parser(parser: argparse.ArgumentParser, command: Command) -> argparse.ArgumentParser:
    """The command's parser plus the flags every command shares, for --help."""
    parser.prog = command.name  # "python -m train.sft", not "sft.py"
    known = {option for action in parser._actions for option in action.option_strings}
    if command.config_dir and "--config" not in known:
        parser.add_argument("--config", help="the run's YAML: every field below (flags override it)")
    if command.check:
        parser.add_argument("--check", action="store_true", help="preflight: check config, inputs, endpoints; exit")
    if "--debug" not in known:
        parser.add_argument("--debug", action="store_true", help="show the traceback of an error")
    return parser


def pop_flag(argv: list[str], flag: str) -> bool:
    """Remove every ``flag`` from argv; True when it was there."""
    found = flag in argv
    argv[:] = [arg for arg in argv if arg != flag]
    return found


def run_command(
    main: Callable[[list[str]], int | None],
    command: Command,
    make_parser: Callable[[], argparse.ArgumentParser] | None = None,
    argv: list[str] | None = None,
) -> int:
    """Run ``main(argv)`` as a command: help, logging, and user errors as one line with exit code 2."""
    argv = list(sys.argv[1:] if argv is None else argv)
    # A bare --debug is ours (transformers' TrainingArguments has a --debug that takes a value).
    bare = [i for i, arg in enumerate(argv) if arg == "--debug" and (i + 1 == len(argv) or argv[i + 1].startswith("-"))]
    argv[:] = [arg for i, arg in enumerate(argv) if i not in bare]
    debug = bool(bare) or os.environ.get("LOGLEVEL", "").upper() == "DEBUG"
    level = "DEBUG" if debug else os.environ.get("LOGLEVEL", "INFO").upper()
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    if make_parser is not None and ("-h" in argv or "--help" in argv):
        print(command.header() + help_parser(make_parser(), command).format_help())
        return 0
    if command.config_dir and not argv:
        print(command.no_arguments(), file=sys.stderr)
        return USER_ERROR_EXIT
    # argparse's usage errors (missing or unknown argument, bad value) become one-line user errors in every parser
    # the command builds, TrlParser included, instead of a usage dump.
    argparse_error, argparse.ArgumentParser.error = argparse.ArgumentParser.error, _usage_error
    try:
        result = main(argv)
        return result if isinstance(result, int) else 0  # some mains return their report for in-process callers
    except KeyboardInterrupt:
        print(f"{command.name}: interrupted", file=sys.stderr)
        return 130
    except Exception as error:
        if not is_user_error(error):
            raise
        if debug:
            traceback.print_exc()
        print(f"{command.name}: error: {one_line(error)}", file=sys.stderr)
        return USER_ERROR_EXIT
    finally:
        argparse.ArgumentParser.error = argparse_error  # in-process callers (tests) get argparse back as it was
