"""The multilingual benchmarks' languages, and the per-benchmark summary of what tuning changed across them.

A multilingual benchmark is one lm-eval task definition (its YAML in eval/lm_eval_tasks) run once per language: the
language's variant swaps the hub config (`dataset_name`) and, where the authors prompt each language in its own words,
the prompt. Languages are ISO 639-1 codes throughout (config, results.json, report); LANGUAGES maps each code to what
the task needs. The lists are the hub datasets' configs at the revisions pinned in the YAMLs (see README "Cultural
benchmarks"); `benchmarks.languages` in an eval config picks a subset (default: all).
"""

import math

# Global-MMLU-Lite (CohereLabs/Global-MMLU-Lite): the 15 languages of its first release, the ones lm-eval 0.4.13 ships
# (lm_eval/tasks/global_mmlu/default/) and the paper evaluates; hub config = the code.
GLOBAL_MMLU_LITE = ("ar", "bn", "de", "en", "es", "fr", "hi", "id", "it", "ja", "ko", "pt", "sw", "yo", "zh")
# INCLUDE (CohereForAI/include-base-44): 44 languages; hub config = the language's English name, as lm-eval 0.4.13's
# lm_eval/tasks/include/default/<Name>/ templates read them.
INCLUDE = {
    "sq": "Albanian", "ar": "Arabic", "hy": "Armenian", "az": "Azerbaijani", "eu": "Basque", "be": "Belarusian",
    "bn": "Bengali", "bg": "Bulgarian", "zh": "Chinese", "hr": "Croatian", "nl": "Dutch", "et": "Estonian",
    "fi": "Finnish", "fr": "French", "ka": "Georgian", "de": "German", "el": "Greek", "he": "Hebrew", "hi": "Hindi",
    "hu": "Hungarian", "id": "Indonesian", "it": "Italian", "ja": "Japanese", "kk": "Kazakh", "ko": "Korean",
    "lt": "Lithuanian", "ms": "Malay", "ml": "Malayalam", "ne": "Nepali", "mk": "North Macedonian", "fa": "Persian",
    "pl": "Polish", "pt": "Portuguese", "ru": "Russian", "sr": "Serbian", "es": "Spanish", "tl": "Tagalog",
    "ta": "Tamil", "te": "Telugu", "tr": "Turkish", "uk": "Ukrainian", "ur": "Urdu", "uz": "Uzbek", "vi": "Vietnamese",
}  # fmt: skip
# BertaQA (HiTZ/BertaQA): the Basque original and its professional English translation, each prompted in its own
# language as lm-eval 0.4.13's bertaqa_eu / bertaqa_en do (machine-translated en_mt_* configs left out).
BERTAQA_PROMPTS = {
    "eu": "Galdera: {{question}}\nA: {{candidates[0]}}\nB: {{candidates[1]}}\nC: {{candidates[2]}}\nErantzuna:",
    "en": "Question: {{question}}\nA: {{candidates[0]}}\nB: {{candidates[1]}}\nC: {{candidates[2]}}\nAnswer:",
}
# benchmark -> language -> the task-config keys its variant overrides.
LANGUAGES: dict[str, dict[str, dict]] = {
    "global_mmlu_lite": {code: {"dataset_name": code} for code in GLOBAL_MMLU_LITE},
    "include": {code: {"dataset_name": name} for code, name in INCLUDE.items()},
    "bertaqa": {code: {"dataset_name": code, "doc_to_text": text} for code, text in BERTAQA_PROMPTS.items()},
}
# The writing system of each language (the report says how many scripts a run covered).
SCRIPTS = {
    "Latin": "sq az eu hr nl en et fi fr de hu id it lt ms pl pt es sw tl tr uz vi yo",
    "Arabic": "ar fa ur",
    "Cyrillic": "be bg kk mk ru sr uk",
    "Devanagari": "hi ne",
    "CJK": "zh ja",
    "Hangul": "ko",
    "Bengali": "bn",
    "Armenian": "hy",
    "Georgian": "ka",
    "Greek": "el",
    "Hebrew": "he",
    "Malayalam": "ml",
    "Tamil": "ta",
    "Telugu": "te",
}
SCRIPT_OF = {code: script for script, codes in SCRIPTS.items() for code in codes.split()}


def lm_task_name(benchmark: str, language: str) -> str:
    """The lm-eval task name of one language's variant (global_mmlu_lite_ar, include_hi, bertaqa_eu)."""
    return f"{benchmark}_{language}"


def selected_languages(benchmark: str, requested: list[str] | None) -> list[str]:
    """The benchmark's languages that a run asks for (all of them when `requested` is None), in the table's order."""
    known = list(LANGUAGES[benchmark])
    return known if requested is None else [code for code in known if code in requested]


def summary(changes: dict[str, dict]) -> dict:
    """Across languages, from {language: {"delta", "ci_low", "ci_high", "n"}}: the mean change (each language
    weighs the same), the worst language and its change, and how many languages got worse (95% CI wholly below 0),
    over the languages with a defined change."""
    defined = {lang: d for lang, d in changes.items() if _finite(d.get("delta"))}
    if not defined:
        return {"mean_delta": None, "worst_language": None, "worst_delta": None, "languages_worse": 0, "n_languages": 0}
    worst = min(defined, key=lambda lang: defined[lang]["delta"])
    return {
        "mean_delta": sum(d["delta"] for d in defined.values()) / len(defined),
        "worst_language": worst,
        "worst_delta": defined[worst]["delta"],
        "languages_worse": sum(1 for d in defined.values() if _finite(d.get("ci_high")) and d["ci_high"] < 0),
        "n_languages": len(defined),
    }


def _finite(value) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)
