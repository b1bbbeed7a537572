"""Docker-style generated container names: adjective_surname."""

from __future__ import annotations

import os

ADJECTIVES = (
    "agile amazing awesome blissful bold brave busy calm charming clever cool compassionate "
    "confident cranky dazzling determined distracted dreamy eager ecstatic elastic elated "
    "elegant eloquent epic fervent festive flamboyant focused friendly frosty funny gallant "
    "gifted goofy gracious great happy hardcore heuristic hopeful hungry infallible inspiring "
    "intelligent interesting jolly jovial keen kind laughing loving lucid magical modest "
    "musing mystifying naughty nervous nice nifty nostalgic objective optimistic peaceful "
    "pedantic pensive practical priceless quirky quizzical recursing relaxed reverent "
    "romantic sad serene sharp silly sleepy stoic strange stupefied suspicious sweet tender "
    "thirsty trusting unruffled upbeat vibrant vigilant vigorous wizardly wonderful xenodochial "
    "youthful zealous zen"
).split()

SURNAMES = (
    "agnesi albattani allen almeida archimedes ardinghelli aryabhata austin babbage banach "
    "bardeen bartik bassi bell bhabha bhaskara blackwell bohr booth borg bose boyd brahmagupta "
    "brattain brown carson cerf chandrasekhar chatelet clarke colden cori cray curie darwin "
    "davinci dijkstra dirac driscoll dubinsky easley einstein elbakyan elgamal elion engelbart "
    "euclid euler faraday fermat fermi feynman franklin gagarin galileo gates gauss germain "
    "goldberg goldstine goodall hamilton hawking heisenberg hermann hertz hodgkin hofstadter "
    "hopper hypatia jackson jang jennings jepsen johnson joliot kalam kapitsa keldysh keller "
    "kepler khorana kilby kirch knuth kowalevski lalande lamarr lamport leakey leavitt "
    "lehmann lewin lichterman liskov lovelace lumiere mahavira margulis matsumoto maxwell "
    "mayer mccarthy mcclintock mclean meitner mendel mendeleev merkle mirzakhani montalcini "
    "moore morse moser napier nash neumann newton nightingale nobel noether northcutt noyce "
    "panini pare pascal pasteur payne perlman pike poincare poitras ptolemy raman ramanujan "
    "ride ritchie robinson roentgen rosalind rubin saha sammet sanderson satoshi shamir "
    "shannon shaw shirley shockley sinoussi snyder solomon spence stonebraker sutherland "
    "swanson swartz swirles taussig tesla tharp thompson torvalds turing varahamihira "
    "visvesvaraya volhard wescoff wilbur wiles williams williamson wilson wing wozniak wright "
    "wu yalow yonath zhukovsky"
).split()


def generate(taken: set[str]) -> str:
    """A free name; a digit is appended after a few collisions, as docker does."""
    for attempt in range(100):
        a = ADJECTIVES[int.from_bytes(os.urandom(2), "big") % len(ADJECTIVES)]
        s = SURNAMES[int.from_bytes(os.urandom(2), "big") % len(SURNAMES)]
        name = f"{a}_{s}" if attempt < 10 else f"{a}_{s}{attempt}"
        if name not in taken:
            return name
    return "c_" + os.urandom(6).hex()


def valid(name: str) -> bool:
    """Like docker: [a-zA-Z0-9][a-zA-Z0-9_.-]+."""
    import re

    return re.fullmatch(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*", name) is not None and len(name) <= 128
