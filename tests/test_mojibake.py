"""The mojibake rule (data_pipeline/mojibake.py, used by every text check in data_pipeline/records.py): real text in
the languages a cultural dataset holds passes in upper and lower case; the same text read the wrong way is refused."""

import pytest

from data_pipeline.records import text_problem

# Real-looking sentences (written for this test), with each language's own letters.
CORPUS = {
    "portuguese": [
        "Relações cristã—muçulmanas no Brasil colonial: o que mudou após 1808?",
        "A irmã da noiva leva o pão de ló à festa de São João, não é?",
        "Por que o Círio de Nazaré reúne milhões de fiéis em Belém do Pará?",
    ],
    "vietnamese": [
        "Tết Nguyên Đán là dịp các gia đình Việt Nam sum họp và cúng tổ tiên.",
        "Người Huế thường nấu bún bò với sả, mắm ruốc và ớt.",
        "Áo dài được mặc trong những ngày lễ quan trọng ở Đà Nẵng…",
    ],
    "turkish": [
        "Kırkpınar yağlı güreşleri her yaz Edirne'de düzenlenir.",
        "Türk kahvesi ikram edilirken yanında bir bardak su ve lokum verilir.",
        "Şeker Bayramı'nda çocuklar kapı kapı dolaşıp şeker toplar; hâlâ öyle mi?",
    ],
    "polish": [
        "Wigilia zaczyna się, gdy na niebie pojawi się pierwsza gwiazdka.",
        "Śmigus-dyngus to zwyczaj oblewania się wodą w Poniedziałek Wielkanocny.",
        "Pączki je się w tłusty czwartek — żółte, z różą w środku.",
    ],
    "french": [
        "Pourquoi la galette des rois cache-t-elle une fève à l’Épiphanie ?",
        "Le « repas gastronomique des Français » est inscrit au patrimoine de l’UNESCO.",
        "À Noël, en Provence, on sert les treize desserts après la messe de minuit.",
    ],
    "german": [
        "Beim Schützenfest in Düsseldorf trägt der König eine Silberkette.",
        "Warum heißt der Tag vor Aschermittwoch in Köln „Veilchendienstag“?",
        "Öffnungszeiten der Weihnachtsmärkte: täglich bis 21 Uhr, außer am 24. Dezember.",
    ],
}
SENTENCES = [(lang, s) for lang, sentences in CORPUS.items() for s in sentences]


def cp1252_misread(text: str) -> str:
    """UTF-8 bytes read as cp1252, the way a Windows tool does it (an undefined byte becomes its C1 control)."""
    return "".join(bytes([b]).decode("cp1252", errors="ignore") or chr(b) for b in text.encode("utf-8"))


@pytest.mark.parametrize("case", ["as written", "upper", "lower"])
@pytest.mark.parametrize("lang,sentence", SENTENCES)
def test_real_text_passes_in_any_case(lang, sentence, case):
    text = {"as written": sentence, "upper": sentence.upper(), "lower": sentence.lower()}[case]
    assert text_problem(text) is None, (lang, text)


def test_the_issue_example_and_portuguese_capitals_before_punctuation_pass():
    # Ã is a letter here: the word ends in it, and Ç, Õ elsewhere show the text was decoded right.
    for text in ("CRISTÃ—MUÇULMANA", "RELAÇÕES CRISTÃ—MUÇULMANAS", "“IRMÃ”, DISSE ELA À MÃE", "MAÇÃ… E PÃO"):
        assert text_problem(text) is None, text


@pytest.mark.parametrize("case", ["as written", "upper", "lower"])
@pytest.mark.parametrize("lang,sentence", SENTENCES)
def test_the_same_text_read_as_cp1252_or_latin1_is_refused(lang, sentence, case):
    text = {"as written": sentence, "upper": sentence.upper(), "lower": sentence.lower()}[case]
    assert text_problem(cp1252_misread(text)) is not None, (lang, cp1252_misread(text))
    # latin-1 turns the continuation bytes 0x80-0x9F into C1 controls, or into the same pairs as cp1252 above it.
    assert text_problem(text.encode("utf-8").decode("latin-1")) is not None, lang


@pytest.mark.parametrize(
    "text,found,at",
    [
        ("CafÃ© in TÃ©hÃ©ran", "Ã©", 4),  # é
        ("Itâ€™s Nowruz", "â€™", 3),  # ’
        ("Ã–sterreich feiert", "Ã–", 1),  # Ö: only pairs, no letter decoded right, so the dash counts
        ("ESPAÃ‘A", "Ã‘", 5),  # Ñ
        ("Ã\u00a0la carte", "Ã\u00a0", 1),  # à: Ã before a no-break space
        ("WrocÅ‚aw", "Å‚", 5),  # ł (Polish)
        ("KÄ±rkpÄ±nar", "Ä±", 2),  # ı (Turkish)
        ("Viá»‡t Nam", "á»‡", 3),  # ệ (Vietnamese)
        ("ÐœÐ¾ÑÐºÐ²Ð°", "Ðœ", 1),  # Москва (Cyrillic)
        ("\u00ef\u00bb\u00bfprompt", "ï»¿", 1),  # a byte-order mark
    ],
)
def test_known_misdecodings_are_named_with_their_position(text, found, at):
    assert text_problem(text) == (
        f"mojibake {found!r} at character {at}: UTF-8 text that was read as cp1252 before it was saved here; "
        "fix the source"
    )
