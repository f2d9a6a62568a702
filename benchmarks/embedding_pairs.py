"""Writes the embedding calibration set and the held-out set (sample_data/embedding_*.jsonl).

Each base is a persona written by hand in parts (occupation, place, activity), with a hand-written
paraphrase and a hand-written sibling: someone of the same occupation who is a different person.
From a base we make near-duplicate pairs (the paraphrase, two reorderings of its parts, small edits)
and distinct-but-similar pairs (the sibling; another occupation put in the same place; another base
of the same field). Bases are split by field, alternately, so no base or sibling is in both sets.

    python benchmarks/embedding_pairs.py     # rewrites the two files (deterministic)
"""

from __future__ import annotations

import json
import random
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "sample_data"

# field -> [(occupation, place, activity, paraphrase, sibling)]
BASES = {
    "health": [
        ("pediatric nurse", "in a rural clinic", "organises vaccination days for local families",
         "A children's nurse at a countryside clinic who runs vaccination days for families nearby.",
         "A pediatric nurse on a city hospital's night ward who trains new staff to use infusion pumps."),
        ("physiotherapist", "at a sports injury centre", "helps amateur runners recover from knee surgery",
         "A physical therapist working in a sports injury practice, getting hobby runners back on their feet after knee operations.",
         "A physiotherapist in a care home who keeps elderly residents walking after hip fractures."),
        ("hospital pharmacist", "in a large teaching hospital", "checks chemotherapy doses before they reach the wards",
         "A pharmacist at a big university hospital whose job is verifying cancer drug doses before they go to patients.",
         "A hospital pharmacist in a small district hospital who manages the antibiotic stock during winter outbreaks."),
        ("midwife", "in a coastal town", "runs antenatal classes for first-time parents",
         "A midwife by the sea who teaches pregnancy classes to couples expecting their first baby.",
         "A midwife in a busy urban maternity unit who specialises in high-risk twin births."),
        ("dentist", "with a practice in a busy city", "treats patients who are afraid of the drill",
         "A city dentist whose practice focuses on calming patients with a fear of dental treatment.",
         "A dentist in a mobile clinic who visits remote villages to check schoolchildren's teeth."),
        ("paramedic", "on a mountain rescue team", "reaches injured hikers by helicopter",
         "A paramedic with a mountain rescue service who flies in to treat hikers hurt on the trails.",
         "A paramedic in a city ambulance crew who handles night-time calls in the nightlife district."),
    ],
    "education": [
        ("primary school teacher", "in a village school", "teaches reading to mixed-age classes",
         "A teacher at a small village primary who helps children of different ages learn to read together.",
         "A primary school teacher in an inner-city school who runs the after-school coding club."),
        ("university lecturer", "in medieval history", "writes about trade routes in the Baltic",
         "A lecturer at a university whose research on the Middle Ages covers Baltic trade routes.",
         "A university lecturer in medieval history who studies monastic manuscripts in Ireland."),
        ("secondary school maths teacher", "in a comprehensive school", "prepares students for national exams",
         "A maths teacher at a state secondary school who coaches pupils for their final exams.",
         "A secondary school maths teacher who builds puzzle games to teach algebra to reluctant learners."),
        ("adult literacy tutor", "at a public library", "helps grown-ups learn to read in the evenings",
         "A tutor who teaches reading to adults in evening sessions held at the town library.",
         "An adult literacy tutor in a prison education programme who prepares inmates for job interviews."),
        ("special needs teaching assistant", "in a busy primary school", "supports autistic pupils in class",
         "A teaching assistant in a crowded primary school who works with autistic children during lessons.",
         "A special needs teaching assistant who runs sensory play sessions in a nursery."),
        ("music teacher", "in a suburban secondary school", "directs the school's brass band",
         "A secondary school music teacher in the suburbs who leads the pupils' brass band.",
         "A music teacher who gives private violin lessons from her flat to beginners of all ages."),
    ],
    "software": [
        ("backend developer", "at a logistics startup", "builds the route-planning service for delivery vans",
         "A server-side engineer at a young logistics company who writes the software that plans van delivery routes.",
         "A backend developer at a bank who maintains the payment system written in COBOL."),
        ("data scientist", "at a streaming service", "predicts which subscribers are about to cancel",
         "A data scientist working for a video streaming company who forecasts which customers will leave.",
         "A data scientist at a weather agency who improves rainfall forecasts with satellite images."),
        ("site reliability engineer", "at an online retailer", "keeps the checkout running during holiday sales",
         "An SRE for an e-commerce shop whose job is making sure checkout stays up through the holiday rush.",
         "A site reliability engineer at a game studio who scales servers for new multiplayer launches."),
        ("mobile app developer", "at a fitness company", "writes the workout tracking app for smartwatches",
         "An app developer at a fitness firm who builds the smartwatch app that tracks workouts.",
         "A mobile app developer freelancing for restaurants who builds table booking apps."),
        ("security analyst", "at a regional bank", "investigates phishing attacks on customers",
         "A cybersecurity analyst for a regional bank who looks into phishing scams aimed at its customers.",
         "A security analyst at a hospital who audits the medical devices connected to the network."),
        ("open source maintainer", "of a popular charting library", "reviews pull requests from volunteers",
         "The maintainer of a widely used open source charting library, who goes through volunteers' pull requests.",
         "An open source maintainer of a database driver who writes the release notes and fixes security bugs."),
    ],
    "trades": [
        ("electrician", "in a growing suburb", "fits solar panels and home batteries",
         "A suburban electrician who installs solar panels and battery systems in people's homes.",
         "An electrician on large construction sites who wires office towers."),
        ("carpenter", "in a mountain village", "restores old timber-framed barns",
         "A carpenter from a mountain village who repairs historic timber-frame barns.",
         "A carpenter in a city workshop who builds custom kitchen cabinets."),
        ("plumber", "in an old city centre", "replaces lead pipes in Victorian houses",
         "A city-centre plumber who swaps out the lead piping in nineteenth-century houses.",
         "A plumber who installs heat pumps and underfloor heating in new-build estates."),
        ("car mechanic", "at a family-run garage", "repairs vintage Italian sports cars",
         "A mechanic in a small family garage who fixes classic Italian sports cars.",
         "A car mechanic at a dealership who diagnoses software faults in electric vehicles."),
        ("welder", "in a shipyard", "joins steel plates for cargo ship hulls",
         "A shipyard welder who fuses the steel plates that make up cargo vessels' hulls.",
         "A welder who makes metal garden sculptures to sell at craft fairs."),
        ("roofer", "in a rainy northern town", "repairs slate roofs after winter storms",
         "A roofer in a wet northern town who mends slate roofs damaged by winter storms.",
         "A roofer who lays green roofs planted with sedum on city office buildings."),
    ],
    "arts": [
        ("jazz pianist", "in a late-night bar", "plays standards for a loyal crowd of regulars",
         "A jazz piano player at a bar that stays open late, performing standards for regulars who keep coming back.",
         "A jazz pianist who composes scores for silent films shown at festivals."),
        ("portrait photographer", "in a small seaside studio", "takes family photos for holidaymakers",
         "A photographer with a little studio by the sea who shoots family portraits for tourists.",
         "A portrait photographer who travels with politicians to shoot official campaign photos."),
        ("novelist", "living in a remote cottage", "writes crime stories set in fishing villages",
         "A novelist in an isolated cottage who writes detective stories that take place in fishing villages.",
         "A novelist who writes science fiction about life on generation ships."),
        ("theatre set designer", "at a regional playhouse", "builds sets from recycled materials",
         "A set designer for a regional theatre who makes stage sets out of recycled materials.",
         "A theatre set designer who designs the stages for touring opera productions."),
        ("heavy metal guitarist", "in a touring band", "writes riffs inspired by Norse mythology",
         "A guitarist in a metal band on tour who composes riffs drawing on Norse myths.",
         "A heavy metal guitarist who teaches guitar lessons online to teenagers."),
        ("ceramic artist", "with a studio in an old mill", "makes glazed bowls for restaurants",
         "A potter working from a studio in a converted mill who produces glazed bowls for restaurants.",
         "A ceramic artist who builds large outdoor sculptures for public parks."),
    ],
    "farming": [
        ("dairy farmer", "in the hills", "switched her herd to organic grazing",
         "A dairy farmer in hill country who has moved her cows over to organic pasture.",
         "A dairy farmer on the plains who runs a robotic milking shed for four hundred cows."),
        ("beekeeper", "on the edge of a moorland", "sells heather honey at a weekly market",
         "A beekeeper by the moors who sells heather honey at the market every week.",
         "A beekeeper who rents hives to almond orchards for pollination."),
        ("vineyard owner", "in a cool northern valley", "makes sparkling wine from early grapes",
         "The owner of a vineyard in a chilly northern valley who produces sparkling wine from grapes that ripen early.",
         "A vineyard owner on a sunny hillside who runs wine tasting tours for tourists."),
        ("market gardener", "near a big city", "grows salad leaves for local restaurants",
         "A small-scale grower just outside a city who supplies salad greens to nearby restaurants.",
         "A market gardener who grows heritage tomato varieties and sells seeds online."),
        ("sheep farmer", "on a windswept island", "breeds a rare native sheep for wool",
         "A farmer on a windy island who raises a rare local sheep breed for its wool.",
         "A sheep farmer who trains border collies for sheepdog trials."),
        ("agronomist", "at a seed cooperative", "tests drought-tolerant wheat varieties",
         "An agronomist working for a seed co-op who trials wheat strains that can survive drought.",
         "An agronomist who advises rice farmers on reducing fertiliser runoff."),
    ],
    "law_and_public": [
        ("immigration lawyer", "in a busy port city", "represents asylum seekers at appeal hearings",
         "A lawyer in a busy port city who specialises in immigration and argues asylum appeals.",
         "An immigration lawyer who helps tech companies get work visas for their engineers."),
        ("city planner", "in a fast-growing town", "designs cycle lanes and safer crossings",
         "An urban planner in a quickly expanding town who lays out bike lanes and safer pedestrian crossings.",
         "A city planner who manages the redevelopment of an old docklands area into housing."),
        ("firefighter", "at a rural station", "trains volunteers to fight wildfires",
         "A firefighter at a countryside fire station who teaches volunteer crews to tackle wildfires.",
         "A firefighter in a city station who investigates the causes of house fires."),
        ("court interpreter", "in a regional court", "translates Portuguese testimony in criminal trials",
         "An interpreter at a regional courthouse who renders Portuguese witness statements in criminal cases.",
         "A court interpreter who provides sign language interpretation in family court."),
        ("police detective", "in a small market town", "investigates burglaries from farms",
         "A detective in a small market town's police force who looks into thefts from farms.",
         "A police detective in a capital city's fraud unit who tracks online investment scams."),
        ("social worker", "in a city council", "supports teenagers leaving foster care",
         "A council social worker in the city who helps young people as they move out of foster care.",
         "A social worker in a hospital who arranges care at home for elderly patients being discharged."),
    ],
    "food": [
        ("pastry chef", "in a hotel kitchen", "creates wedding cakes with sugar flowers",
         "A hotel pastry chef who makes wedding cakes decorated with flowers made of sugar.",
         "A pastry chef who runs a vegan bakery selling sourdough croissants."),
        ("food truck owner", "in a university town", "sells Korean fried chicken to students",
         "Someone who owns a food truck in a college town and serves Korean fried chicken to students.",
         "A food truck owner who sells wood-fired pizza at music festivals."),
        ("cheesemaker", "on a mountain farm", "ages hard cheeses in a cave",
         "A cheesemaker at a farm in the mountains who matures hard cheeses in a cave.",
         "A cheesemaker in a city creamery who makes fresh mozzarella every morning."),
        ("restaurant critic", "for a national newspaper", "reviews new restaurants anonymously",
         "A food critic writing for a national paper who visits newly opened restaurants without revealing who she is.",
         "A restaurant critic who hosts a podcast about street food around the world."),
        ("brewer", "at a small craft brewery", "experiments with sour beers and wild yeast",
         "A brewer at a little craft brewery who experiments with sour styles using wild yeast.",
         "A brewer at a large industrial brewery who manages quality control of lager."),
        ("school cook", "in a primary school kitchen", "plans healthy lunches on a tight budget",
         "A cook in a primary school's kitchen who plans nutritious lunches on very little money.",
         "A school cook who runs a breakfast club for children from low-income families."),
    ],
    "science": [
        ("marine biologist", "at a coastal research station", "counts seal pups each spring",
         "A marine biologist based at a research station on the coast who surveys newborn seals every spring.",
         "A marine biologist who studies coral bleaching on tropical reefs."),
        ("astronomer", "at a mountain observatory", "searches for planets around nearby stars",
         "An astronomer working at an observatory on a mountain who looks for exoplanets orbiting close stars.",
         "An astronomer who runs public stargazing evenings at a city planetarium."),
        ("lab technician", "in a vaccine research institute", "runs quality tests on vaccine batches",
         "A technician in a vaccine research institute's lab who carries out quality checks on each batch.",
         "A lab technician in a hospital who processes blood samples overnight."),
        ("geologist", "for a mining company", "maps copper deposits in the desert",
         "A geologist employed by a mining firm who surveys copper deposits out in the desert.",
         "A geologist who monitors an active volcano for signs of eruption."),
        ("climate scientist", "at a polar research base", "drills ice cores to study past temperatures",
         "A climate researcher at a base in the polar regions who extracts ice cores to reconstruct ancient temperatures.",
         "A climate scientist who builds computer models of sea level rise for coastal cities."),
        ("entomologist", "at a natural history museum", "catalogues beetles collected a century ago",
         "An insect specialist at a natural history museum who catalogues beetle specimens gathered a hundred years ago.",
         "An entomologist who studies mosquitoes that carry malaria in wetland villages."),
    ],
    "business": [
        ("small business accountant", "in a market town", "does the tax returns of local shopkeepers",
         "An accountant for small businesses in a market town who prepares tax returns for the local shop owners.",
         "A small business accountant who advises tech startups on raising their first funding round."),
        ("warehouse manager", "at a supermarket distribution centre", "plans night shifts for two hundred pickers",
         "The manager of a supermarket's distribution warehouse who schedules night shifts for two hundred order pickers.",
         "A warehouse manager at a furniture company who introduced robots to move pallets."),
        ("estate agent", "in a seaside resort", "sells holiday flats to retired couples",
         "A property agent in a seaside resort who sells holiday apartments to retired couples.",
         "An estate agent in a capital city who rents luxury flats to diplomats."),
        ("human resources manager", "at a car factory", "negotiates shift patterns with the union",
         "An HR manager at a car plant who works out shift schedules with the trade union.",
         "A human resources manager at a charity who recruits volunteers for overseas projects."),
        ("shop owner", "with a second-hand bookshop", "hosts poetry readings on Friday nights",
         "The owner of a used bookshop who holds poetry evenings every Friday night.",
         "A shop owner with a hardware store who repairs lawnmowers in the back room."),
        ("travel agent", "in a small high-street office", "plans walking holidays for older customers",
         "A travel agent working from a small office on the high street who arranges walking trips for older clients.",
         "A travel agent who books business trips for engineers working on oil rigs."),
    ],
}

# Small edits a copy picks up: each keeps the persona and changes its surface.
def typo(text: str, rng: random.Random) -> str:
    words = text.split()
    k = rng.choice([i for i, w in enumerate(words) if len(w) > 4])
    w = words[k]
    j = rng.randrange(1, len(w) - 2)
    words[k] = w[:j] + w[j + 1] + w[j] + w[j + 2 :]
    return " ".join(words)


def drop_word(text: str, rng: random.Random) -> str:
    words = text.split()
    k = rng.randrange(1, len(words))
    return " ".join(words[:k] + words[k + 1 :])


def casual(text: str, rng: random.Random) -> str:
    return text[0].lower() + text[1:].rstrip(".")


def who_that(text: str, rng: random.Random) -> str:
    return text.replace(" who ", " that ", 1) if " who " in text else text.replace(" a ", " one ", 1)


EDITS = [typo, drop_word, casual, who_that]


def persona(occupation: str, place: str, activity: str) -> str:
    article = "An" if occupation[0] in "aeiou" else "A"
    return f"{article} {occupation} {place} who {activity}."


def pairs_of(bases: list[tuple[str, tuple]], rng: random.Random) -> list[dict]:
    out = []
    for n, (field, (occupation, place, activity, paraphrase, sibling)) in enumerate(bases):
        text = persona(occupation, place, activity)
        article = "an" if occupation[0] in "aeiou" else "a"
        near = {
            "paraphrase": paraphrase,
            "reorder": f"{place[0].upper()}{place[1:]}, {article} {occupation} who {activity}.",
            "reorder-clause": f"{article.capitalize()} {occupation} who {activity}, {place}.",
        }
        for edit in rng.sample(EDITS, 3):
            near[f"edit:{edit.__name__}"] = edit(text, rng)
        out += [{"a": text, "b": b, "label": "near", "kind": kind, "field": field} for kind, b in near.items()]
        same_field = [b for f, b in bases if f == field and b[0] != occupation]
        other_field = [b for f, b in bases if f != field]
        movers = rng.sample(other_field, 2)
        distinct = {
            "same-occupation": (text, sibling),
            "same-occupation-paraphrased": (paraphrase, sibling),
            "same-place-other-occupation": (text, persona(movers[0][0], place, movers[0][2])),
            "same-place-other-occupation-2": (text, persona(movers[1][0], place, movers[1][2])),
            "same-field": (text, persona(*rng.choice(same_field)[:3])),
        }
        out += [{"a": a, "b": b, "label": "distinct", "kind": kind, "field": field} for kind, (a, b) in distinct.items()]
    return out


def main() -> None:
    rng = random.Random(2406)
    calibration = [(f, b) for f, bases in BASES.items() for k, b in enumerate(bases) if k % 3 != 2]
    held_out = [(f, b) for f, bases in BASES.items() for k, b in enumerate(bases) if k % 3 == 2]
    for name, bases in (("embedding_calibration", calibration), ("embedding_heldout", held_out)):
        rows = pairs_of(bases, rng)
        with open(OUT / f"{name}.jsonl", "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in rows)
        near = sum(r["label"] == "near" for r in rows)
        print(f"{name}: {len(bases)} bases, {near} near-duplicate pairs, {len(rows) - near} distinct pairs")


if __name__ == "__main__":
    main()
