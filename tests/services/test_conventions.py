"""STYLE rule 2, checked: every service function takes ``session`` as a keyword-only argument."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import taskledger.services


def test_every_service_function_takes_a_keyword_only_session():
    checked, positional = 0, []
    for info in pkgutil.iter_modules(taskledger.services.__path__, prefix="taskledger.services."):
        module = importlib.import_module(info.name)
        for name, function in inspect.getmembers(module, inspect.isfunction):
            if function.__module__ != module.__name__:
                continue  # imported from elsewhere
            parameter = inspect.signature(function).parameters.get("session")
            if parameter is None:
                continue
            checked += 1
            if parameter.kind is not inspect.Parameter.KEYWORD_ONLY:
                positional.append(f"{module.__name__}.{name}")
    assert checked >= 60
    assert positional == []
