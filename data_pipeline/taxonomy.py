"""The cultural taxonomy: UNESCO Framework for Cultural Statistics (FCS) 2009 domains and CULTURAX subdomains.

Ids 0-41 are the released CULTURAX's own class ids (its README table, plus 5 Zoos and Aquariums, 18 Radio and
36 Magazines, which the data uses and its class-count table names). Ids 30, 31 and 40 never appear in the release and
its documentation does not name them, so they stay unassigned rather than guessed. Ids from 42 on complete the FCS
subdomains the release has no id for (e.g. Tourism), marked ``in_release=False``.

Mapping to the FCS 2009 domains (A-F cultural domains, the transversal Intangible Cultural Heritage domain, and the
two related domains G Tourism and H Sports and Recreation):

- A Cultural and Natural Heritage: museums, archaeological and historical places, cultural landscapes, natural
  heritage. Judgement calls: National Parks, Zoos and Aquariums, Botanical Gardens and Marine Ecosystems are filed as
  natural heritage (the FCS lists natural heritage, not these institutions by name).
- B Performance and Celebration: performing arts, music, festivals, fairs and feasts. Judgement call: Festivals and
  Markets (fairs) sits here beside Festivals; Opera is performing arts.
- C Visual Arts and Crafts: fine arts, photography, crafts.
- D Books and Press: books, newspapers and magazines, libraries, book fairs.
- E Audio-visual and Interactive Media: film and video, TV and radio, podcasting, video games. Judgement call:
  Social Networks and Blogs count as interactive media (the FCS predates them; they carry cultural content online).
- F Design and Creative Services: fashion, graphic, interior and landscape design, architectural and advertising
  services. Judgement call: Industrial Design is filed here; the FCS leaves it to related design activities.
- Intangible Cultural Heritage (transversal): oral traditions, languages, rituals, social practices, knowledge of
  nature. Judgement calls: Culinary Arts (gastronomic practices are inscribed on UNESCO's ICH lists) and
  Bio-Cultural Practices sit here.
- G Tourism: charter travel and tourist services, hospitality and accommodation.
- H Sports and Recreation: sports, fitness, amusement and theme parks. Judgement call: Folk Sports sits here, though
  traditional games are also intangible heritage.
"""

from dataclasses import dataclass

HERITAGE = "Cultural and Natural Heritage"
PERFORMANCE = "Performance and Celebration"
VISUAL = "Visual Arts and Crafts"
BOOKS = "Books and Press"
MEDIA = "Audio-visual and Interactive Media"
DESIGN = "Design and Creative Services"
INTANGIBLE = "Intangible Cultural Heritage"
TOURISM = "Tourism"
SPORTS = "Sports and Recreation"
DOMAINS: tuple[str, ...] = (HERITAGE, PERFORMANCE, VISUAL, BOOKS, MEDIA, DESIGN, INTANGIBLE, TOURISM, SPORTS)

NONE_ID = 41


@dataclass(frozen=True)
class Subdomain:
    id: int
    name: str
    domain: str
    tangible: bool  # physical objects or places (True) vs practices, knowledge, performances, media (False)
    description: str  # one sentence that classifiers and generation prompts use
    in_release: bool = True


# One line per subdomain: id, name, UNESCO domain, tangible, description, in_release.
# fmt: off
_ALL = [Subdomain(*row) for row in [
    (0, "Artifacts", HERITAGE, True, "Historical objects such as tools, jewellery, pottery, coins and ritual items, their origins and meaning.", True),
    (1, "Monuments", HERITAGE, True, "Statues, memorials, temples, palaces and landmark buildings of historical or symbolic importance.", True),
    (2, "Museums", HERITAGE, True, "Museums and their collections, exhibitions, curation, repatriation and visiting etiquette.", True),
    (3, "Historical and Archeological Sites", HERITAGE, True, "Ruins, excavations, ancient cities and heritage sites and what they reveal about past societies.", True),
    (4, "National Parks", HERITAGE, True, "Protected natural areas and the cultural meaning, indigenous stewardship and visitor customs tied to them.", True),
    (5, "Zoos and Aquariums", HERITAGE, True, "Zoos, aquariums and wildlife sanctuaries, their history, ethics and role in conservation and education.", True),
    (6, "Botanical Gardens", HERITAGE, True, "Botanical gardens and plant collections, medicinal and sacred plants, and garden traditions.", True),
    (7, "Marine Ecosystems", HERITAGE, True, "Seas, reefs and coasts as natural heritage and the fishing and seafaring cultures tied to them.", True),
    (8, "Cultural Landscapes", HERITAGE, True, "Landscapes shaped by people over centuries, such as rice terraces, vineyards and sacred mountains.", True),
    (9, "Libraries", BOOKS, True, "Libraries, archives and manuscript collections, their history, access and preservation.", True),
    (10, "Language", INTANGIBLE, False, "Languages, dialects, scripts, idioms, names, forms of address and language preservation.", True),
    (11, "Culinary Arts", INTANGIBLE, False, "Food, cuisines, dishes, ingredients, cooking methods, dining etiquette and food customs.", True),
    (12, "Crafts", VISUAL, True, "Handicrafts such as weaving, pottery, woodcarving, metalwork and embroidery and the artisans who make them.", True),
    (13, "Bio-Cultural Practices", INTANGIBLE, False, "Traditional knowledge about nature: herbal medicine, farming, herding, seasonal and ecological practices.", True),
    (14, "Folk Sports", SPORTS, False, "Traditional and indigenous sports, games and martial arts and the communities that play them.", True),
    (15, "Festivals", PERFORMANCE, False, "Religious, seasonal and national festivals and holidays, their rituals, meaning and etiquette.", True),
    (16, "Film and Video", MEDIA, False, "Cinema and video traditions, national film industries, directors and how films portray cultures.", True),
    (17, "TV", MEDIA, False, "Television programmes, broadcasting traditions, series and their cultural influence.", True),
    (18, "Radio", MEDIA, False, "Radio broadcasting, community radio, radio dramas and their role in public life.", True),
    (19, "Festivals and Markets", PERFORMANCE, False, "Fairs, bazaars, night markets and trade festivals, bargaining customs and market traditions.", True),
    (20, "Theatrical Performance", PERFORMANCE, False, "Theatre, puppetry, storytelling performances and traditional drama forms.", True),
    (21, "Dance", PERFORMANCE, False, "Traditional, ritual and contemporary dance forms, their costumes, music and social meaning.", True),
    (22, "Opera", PERFORMANCE, False, "Opera and musical theatre traditions such as Italian opera and Peking opera.", True),
    (23, "Graphic Design", DESIGN, False, "Visual communication, typography, calligraphy in design, posters, logos and cultural symbols.", True),
    (24, "Fashion Design", DESIGN, False, "Clothing, traditional dress, textiles in fashion, and cultural appropriation in design.", True),
    (25, "Industrial Design", DESIGN, True, "Design of everyday products and objects and how culture shapes their form and use.", True),
    (26, "Architectural Services", DESIGN, True, "Architecture, building styles, vernacular housing, urban design and architectural heritage.", True),
    (27, "Interior Design", DESIGN, True, "Interior spaces, home decoration, furniture and spatial traditions such as feng shui or vastu.", True),
    (28, "Fine Arts", VISUAL, True, "Painting, sculpture, drawing and art movements, artists and their cultural contexts.", True),
    (29, "Photography", VISUAL, True, "Photography, photographic traditions and ethics of photographing people and sacred places.", True),
    (32, "Live Music", PERFORMANCE, False, "Concerts, traditional music performance, musical genres and music etiquette.", True),
    (33, "Musical Instruments", PERFORMANCE, True, "Traditional and classical musical instruments, how they are made and played.", True),
    (34, "Books", BOOKS, False, "Literature, authors, classic and contemporary books, poetry and translation.", True),
    (35, "Newspapers", BOOKS, False, "Newspapers, journalism, press freedom and the role of the press in society.", True),
    (36, "Magazines", BOOKS, False, "Magazines, periodicals and zines and the cultures and communities they serve.", True),
    (37, "Social Networks", MEDIA, False, "Social media platforms, online communities, memes, influencers and digital etiquette.", True),
    (38, "Blogs", MEDIA, False, "Blogs, vlogs and personal online publishing about travel, food, culture and identity.", True),
    (39, "Video Games", MEDIA, False, "Video games, gaming cultures and how games represent history, myths and peoples.", True),
    (41, "None", "", False, "Not about a cultural subdomain, or about none clearly enough to label.", True),
    (42, "Recorded Music and Podcasts", MEDIA, False, "Recorded music, music streaming and podcasts as carriers of culture.", False),
    (43, "Book Fairs and Printed Matter", BOOKS, False, "Book fairs, comics, printed matter and publishing traditions.", False),
    (44, "Advertising and Landscape Design", DESIGN, False, "Advertising services and landscape design and the cultural codes they use.", False),
    (45, "Oral Traditions and Rituals", INTANGIBLE, False, "Myths, folktales, proverbs, rites of passage, weddings, funerals and social customs.", False),
    (46, "Tourism and Hospitality", TOURISM, False, "Travel, tourist services, hospitality customs, guest etiquette and responsible tourism.", False),
    (47, "Sports and Recreation", SPORTS, False, "Modern sports, fitness, amusement and theme parks and the cultures around them.", False),
]]
# fmt: on

SUBDOMAINS: dict[int, Subdomain] = {s.id: s for s in _ALL}
_BY_NAME = {s.name.lower(): s for s in _ALL}

# The 30 ids the released CulturaX.csv actually uses (its class-count table).
RELEASE_IDS: frozenset[int] = frozenset(
    {3, 4, 5, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 24, 25, 26, 27, 28, 33, 34, 35, 36, 37, 38, 39}
)
CLASSIFIABLE_IDS: tuple[int, ...] = tuple(i for i in SUBDOMAINS if i != NONE_ID)


def get(subdomain_id: int) -> Subdomain:
    try:
        return SUBDOMAINS[int(subdomain_id)]
    except KeyError:
        raise KeyError(f"unknown subdomain id {subdomain_id!r}; known ids: {sorted(SUBDOMAINS)}") from None


def by_name(name: str) -> Subdomain:
    try:
        return _BY_NAME[name.strip().lower()]
    except KeyError:
        raise KeyError(f"unknown subdomain name {name!r}; known: {sorted(s.name for s in _ALL)}") from None
