"""The example application: scores a number and says it in words."""

import humanize


def describe(value: int) -> str:
    """`value` in words, as the reports show it."""
    return humanize.intword(value)


def handler(context, value: int = 1_200_000):
    """MLRun's entry point (`mlrun.code_to_function(..., handler="scorer.handler")`)."""
    text = describe(value)
    context.log_result("description", text)
    return text
