import csv

import pytest

from data_pipeline import taxonomy

# The release README's own table, plus the three ids its class-count table names (5, 18, 36).
RELEASE_NAMES = {
    0: "Artifacts", 1: "Monuments", 2: "Museums", 3: "Historical and Archeological Sites", 4: "National Parks",
    5: "Zoos and Aquariums", 6: "Botanical Gardens", 7: "Marine Ecosystems", 8: "Cultural Landscapes", 9: "Libraries",
    10: "Language", 11: "Culinary Arts", 12: "Crafts", 13: "Bio-Cultural Practices", 14: "Folk Sports",
    15: "Festivals", 16: "Film and Video", 17: "TV", 18: "Radio", 19: "Festivals and Markets",
    20: "Theatrical Performance", 21: "Dance", 22: "Opera", 23: "Graphic Design", 24: "Fashion Design",
    25: "Industrial Design", 26: "Architectural Services", 27: "Interior Design", 28: "Fine Arts", 29: "Photography",
    32: "Live Music", 33: "Musical Instruments", 34: "Books", 35: "Newspapers", 36: "Magazines",
    37: "Social Networks", 38: "Blogs", 39: "Video Games", 41: "None",
}  # fmt: skip


def test_release_ids_and_names_are_kept():
    for subdomain_id, name in RELEASE_NAMES.items():
        subdomain = taxonomy.get(subdomain_id)
        assert subdomain.name == name
        assert subdomain.in_release
    assert taxonomy.RELEASE_IDS <= set(RELEASE_NAMES)
    assert len(taxonomy.RELEASE_IDS) == 30


def test_every_subdomain_is_complete_and_grounded_in_a_unesco_domain():
    assert len(taxonomy.DOMAINS) == 9
    for subdomain in taxonomy.SUBDOMAINS.values():
        assert subdomain.description.endswith(".")
        if subdomain.id == taxonomy.NONE_ID:
            continue
        assert subdomain.domain in taxonomy.DOMAINS
    covered = {s.domain for s in taxonomy.SUBDOMAINS.values() if s.id != taxonomy.NONE_ID}
    assert covered == set(taxonomy.DOMAINS)
    assert taxonomy.NONE_ID not in taxonomy.CLASSIFIABLE_IDS
    assert not set(taxonomy.SUBDOMAINS) & {30, 31, 40}, "ids the release never names stay unassigned"


def test_lookup_errors_name_the_key():
    with pytest.raises(KeyError, match="99"):
        taxonomy.get(99)
    with pytest.raises(KeyError, match="Puppetry"):
        taxonomy.by_name("Puppetry")
    assert taxonomy.by_name(" festivals AND markets ").id == 19


def test_release_file_uses_exactly_the_release_ids(culturax_release):
    with open(culturax_release, encoding="cp1252", newline="") as handle:
        used = {int(row["class"]) for row in csv.DictReader(handle)}
    assert used == set(taxonomy.RELEASE_IDS)
