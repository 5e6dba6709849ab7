"""A synthetic news corpus. The data is generated, not real news.

Each record is a short news-like article (about 8-14 sentences) on one event of ten kinds: a takeover, an
election, a storm, a football match, a product launch, a study, a court ruling, a strike, company results and
a new boss. The article states three key facts, each in one of several paraphrases, plus a few details that
are not key and distractor sentences about OTHER people, firms, places and numbers, sometimes placed first so
that the lead sentences are not the summary. The `highlights` are abstractive, CNN/DailyMail style: 1-5
short headline sentences, joined by "\\n", that compress the key facts with their own wording. They follow
from the article alone: the headline's form is the one for the phrasing the article gives its main fact,
and each included detail with a highlight adds its line, so `rule_summary`, the same rules run backwards
on the text, reproduces every reference (the task's ceiling is 100). Every name and number in them is taken
from the event, so the article always supports the summary. Each record also carries its `facts` (the
event's slot values, those the highlights use and the distractors'), so faithfulness can be checked
against the truth.

`generate(split, n, seed)` is deterministic: one `random.Random` per call, seeded from the seed AND the split,
so splits differ and nothing depends on global random state.
"""

import random
import re
import string
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Optional

from kd.data.registry import register
from kd.errors import ConfigError

FIRST_NAMES = (
    "Ana", "Ben", "Carla", "David", "Elena", "Farid", "Grace", "Hugo", "Ines", "James", "Kara", "Luis",
    "Maya", "Nikos", "Olga", "Pedro", "Rosa", "Samuel", "Tara", "Omar", "Vera", "Walter", "Yusuf", "Zoe",
    "Adam", "Bianca", "Chen", "Diana", "Emil", "Fatima", "George", "Hannah", "Ivan", "Julia", "Kofi", "Lena",
    "Marco", "Nadia", "Oscar", "Priya", "Rahul", "Sofia", "Tomas", "Ursula", "Victor", "Wendy", "Aisha",
    "Bruno", "Clara", "Daniel", "Eva", "Felix", "Gloria", "Henry", "Irene", "Jonas", "Laura", "Mateo",
    "Nora", "Paul",
)
LAST_NAMES = (
    "Ruiz", "Okafor", "Lindqvist", "Moreau", "Tanaka", "Novak", "Haddad", "Kowalski", "Mensah", "Rossi",
    "Becker", "Silva", "Walsh", "Petrov", "Nguyen", "Fischer", "Osei", "Larsen", "Costa", "Khan", "Murphy",
    "Dubois", "Santos", "Weber", "Kim", "Alvarez", "Brennan", "Castro", "Demir", "Eriksen", "Ferrari",
    "Garcia", "Hansen", "Ibrahim", "Jensen", "Keller", "Lopez", "Meyer", "Nakamura", "Olsen", "Park",
    "Quinn", "Reyes", "Schmidt", "Torres", "Varga", "Wagner", "Young", "Zhang", "Abbott", "Baker", "Carter",
    "Doyle", "Evans", "Foster", "Hughes", "Morales", "Patel", "Shaw", "Vogel",
)
COMPANIES = (
    "Halvorsen Group", "Marlow Foods", "Brightwater Energy", "Kestrel Airlines", "Northgate Bank",
    "Redfern Motors", "Silverline Media", "Oakridge Pharma", "Bluepeak Software", "Granite Steel",
    "Harbor Logistics", "Westbrook Retail", "Crestview Homes", "Lumen Telecom", "Pinecrest Insurance",
    "Ironwood Mining", "Clearwater Chemicals", "Summit Health", "Falcon Robotics", "Evergreen Farms",
    "Atlas Shipping", "Copperfield Games", "Riverside Textiles", "Sterling Capital", "Beacon Solar",
    "Maple Electronics", "Horizon Travel", "Vantage Motors", "Quarry Cement", "Willow Pharmacy",
    "Orchard Drinks", "Cobalt Batteries", "Northwind Power", "Harrow Books", "Tidewater Fisheries",
    "Kingsley Hotels", "Meridian Foods", "Aspen Clothing", "Drayton Airways", "Fenwick Trucks",
)
CITIES = (
    "Lisbon", "Oslo", "Nairobi", "Lima", "Dublin", "Madrid", "Cairo", "Manila", "Warsaw", "Vienna",
    "Prague", "Athens", "Helsinki", "Toronto", "Chicago", "Denver", "Boston", "Seattle", "Sydney", "Perth",
    "Auckland", "Cape Town", "Lagos", "Accra", "Mumbai", "Jakarta", "Seoul", "Osaka", "Bogota", "Santiago",
    "Glasgow", "Leeds", "Bristol", "Geneva", "Milan", "Naples", "Porto", "Hamburg", "Lyon", "Krakow",
)
DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
MONTHS = (
    "January", "February", "March", "April", "May", "June",
    "July", "August", "September", "October", "November", "December",
)
TEAM_SUFFIXES = ("United", "Rovers", "City", "Athletic", "Wanderers", "Town")
COMPETITIONS = ("the cup final", "the league", "a cup semi-final", "a league match", "the first leg of a playoff")
PRODUCTS = ("Nova", "Pulse", "Orbit", "Aero", "Vista", "Echo", "Zenith", "Spark", "Ranger", "Comet")
PRODUCT_KINDS = (
    "smart watch", "phone", "laptop", "electric bicycle", "tablet", "games console", "electric scooter",
    "home speaker",
)
STUDY_FINDINGS = (  # (what was tested, what it reduced)
    ("a daily walk", "the risk of heart disease"), ("a new drug", "asthma attacks"),
    ("eating more fish", "memory loss"), ("a short nap", "work accidents"), ("a new vaccine", "flu cases"),
    ("a new fertiliser", "crop losses"), ("a cheap water filter", "stomach illness"),
    ("more sleep", "sick days"), ("a reading programme", "school dropout"), ("a new road design", "car crashes"),
)
OFFENCES = (
    "misleading customers", "polluting a river", "breaking safety rules", "hiding losses", "fixing prices",
    "selling unsafe toys", "ignoring data laws", "underpaying staff",
)
WORKERS = (
    "bus drivers", "nurses", "teachers", "dock workers", "train drivers", "postal workers", "airport staff",
    "factory workers",
)
REASONS = {
    "rose": ("strong sales", "lower costs", "higher prices", "new customers"),
    "fell": ("weak demand", "higher costs", "lower prices", "a long strike"),
}
QUARTERS = ("first", "second", "third", "fourth")
JOBS = ("shop owner", "teacher", "taxi driver", "student", "nurse", "local official", "retired engineer", "banker")
ROLES = ("chief executive", "chairman", "finance director")
QUOTES = (
    "We will have to wait and see", "Nobody expected this", "It has been a long year for everyone",
    "People here are worried about prices", "Things are getting better", "We need clear answers",
)


@dataclass(frozen=True)
class EventKind:
    """One kind of event: how to draw its slots, how the article states it and how the highlights sum it up.

    `facts` are the key facts, each a tuple of paraphrases; every fact is always in the article, so the
    highlights may use any of their slots. `highlights` are the headline forms, one per phrasing of the
    main fact (`facts[0]`): the phrasing an article uses decides its headline, so the reference follows
    from the text. `details` are (sentence, highlight or None): true but not key, a random subset is
    included, and an included detail with a highlight adds that sentence to the summary, in this order.
    """

    name: str
    slots: Callable[["_Draw"], dict]
    facts: tuple[tuple[str, ...], ...]
    details: tuple[tuple[str, Optional[str]], ...]
    highlights: tuple[tuple[str, ...], ...]


class _Draw:
    """Draws the entities and numbers of one article, never reusing a name, so distractors name OTHER ones."""

    def __init__(self, rng: random.Random, entity_pool: int | None = None):
        self.rng = rng
        self.used: set[str] = set()
        self.entity_pool = entity_pool

    def _fresh(self, pool) -> str:
        value = self.rng.choice([item for item in pool if item not in self.used] or pool)
        self.used.add(value)
        return value

    def _name(self, pool) -> str:
        """A fresh name from the first `entity_pool` names of `pool`."""
        return self._fresh(pool[: self.entity_pool])

    def person(self) -> str:
        return f"{self._name(FIRST_NAMES)} {self._name(LAST_NAMES)}"

    def company(self) -> str:
        return self._name(COMPANIES)

    def city(self) -> str:
        return self._name(CITIES)

    def first_name(self) -> str:
        return self._name(FIRST_NAMES)

    def day(self) -> str:
        return self._fresh(DAYS)

    def month(self) -> str:
        return self._fresh(MONTHS)

    def year(self) -> str:
        return str(self.rng.randint(2008, 2023))

    def pct(self, low: int = 2, high: int = 45) -> str:
        return str(self.rng.randint(low, high))

    def count(self, low: int, high: int, step: int = 1) -> str:
        return f"{self.rng.randrange(low, high, step):,}"

    def money(self) -> str:
        if self.rng.random() < 0.25:
            return f"${self.rng.randint(11, 49) / 10:g} billion"
        return f"${self.rng.randrange(20, 990, 10)} million"


def _acquisition(d: _Draw) -> dict:
    return dict(buyer=d.company(), target=d.company(), amount=d.money(), day=d.day(), ceo=d.person(),
                role=d.rng.choice(ROLES), city=d.city(), month=d.month(), pct=d.pct(3, 30),
                staff=d.count(300, 9000, 100), year=d.year())


def _election(d: _Draw) -> dict:
    return dict(winner=d.person(), loser=d.person(), city=d.city(), day=d.day(), share=d.pct(51, 68),
                turnout=d.pct(35, 80), homes=d.count(2000, 20000, 500), month=d.month())


def _storm(d: _Draw) -> dict:
    return dict(storm=f"Storm {d.first_name()}", place=d.city(), day=d.day(), deaths=d.pct(2, 40),
                homes=d.count(3000, 90000, 1000), wind=d.count(90, 190, 5), days=d.pct(2, 6),
                amount=d.money(), mayor=d.person())


def _match(d: _Draw) -> dict:
    lgoals = d.rng.randint(0, 2)
    return dict(winner=f"{d.city()} {d.rng.choice(TEAM_SUFFIXES)}", loser=f"{d.city()} {d.rng.choice(TEAM_SUFFIXES)}",
                wgoals=str(lgoals + d.rng.randint(1, 3)), lgoals=str(lgoals), scorer=d.person(),
                minute=d.pct(5, 89), comp=d.rng.choice(COMPETITIONS), day=d.day(), crowd=d.count(8000, 70000, 500),
                coach=d.person(), wins=d.pct(3, 9))


def _launch(d: _Draw) -> dict:
    return dict(company=d.company(), product=f"{d.rng.choice(PRODUCTS)} {d.rng.randint(2, 9)}",
                kind=d.rng.choice(PRODUCT_KINDS), price=f"${d.rng.randrange(149, 1999, 50)}", day=d.day(),
                city=d.city(), month=d.month(), designer=d.person(), years=d.pct(2, 6),
                units=d.count(200000, 5000000, 100000))


def _study(d: _Draw) -> dict:
    treatment, outcome = d.rng.choice(STUDY_FINDINGS)
    return dict(uni=f"University of {d.city()}", treatment=treatment, outcome=outcome, pct=d.pct(12, 60),
                count=d.count(400, 12000, 100), months=d.pct(6, 36), lead=d.person(), day=d.day(),
                amount=d.money())


def _ruling(d: _Draw) -> dict:
    return dict(company=d.company(), city=d.city(), day=d.day(), fine=d.money(), offence=d.rng.choice(OFFENCES),
                judge=d.person(), days=d.pct(14, 60), lawyer=d.person(), month=d.month(), year=d.year())


def _strike(d: _Draw) -> dict:
    return dict(workers=d.rng.choice(WORKERS), count=d.count(1200, 30000, 100), city=d.city(), days=d.pct(2, 7),
                day=d.day(), employer=d.company(), pct=d.pct(6, 15), offer=d.pct(1, 5), leader=d.person())


def _results(d: _Draw) -> dict:
    rose = d.rng.choice(("rose", "fell"))
    return dict(company=d.company(), day=d.day(), quarter=d.rng.choice(QUARTERS), rose=rose, pct=d.pct(3, 40),
                profit=d.money(), ceo=d.person(), role=d.rng.choice(ROLES), reason=d.rng.choice(REASONS[rose]),
                city=d.city(), staff=d.count(500, 40000, 500))


def _appointment(d: _Draw) -> dict:
    return dict(company=d.company(), new=d.person(), old=d.person(), role=d.rng.choice(ROLES), day=d.day(),
                year=d.year(), month=d.month(), prev=d.company(), city=d.city(), pct=d.pct(5, 30))


EVENT_KINDS = (
    EventKind(
        "acquisition", _acquisition,
        facts=(
            ("On {day}, the board of {buyer} said it had agreed to buy {target}, one of its main rivals.",
             "{buyer} has agreed to buy its rival {target}, the company said in a statement on {day}.",
             "{buyer} announced on {day} that it would take over {target} after months of talks."),
            ("The deal is worth {amount}, according to {role} {ceo}.",
             "{Role} {ceo} said the company would pay {amount} for the business.",
             "{ceo}, the {role} of {buyer}, said the price of {amount} was fair for both sides."),
            ("The takeover is expected to be completed in {month}, subject to approval by regulators in {city}.",
             "Regulators in {city} must still approve the purchase, which should close in {month}."),
        ),
        details=(("Shares in {target} rose {pct} percent after the news.", "{target} shares rise {pct} percent."),
                 ("{target} employs about {staff} people in several countries.", "{target} employs {staff} people."),
                 ("It is the largest deal for {buyer} since {year}, when it bought a smaller firm abroad.", None),
                 ("Both companies said no jobs would be lost in the first year.", None)),
        highlights=(
            ("{buyer} agrees to buy {target} for {amount}.",),
            ("{buyer} to take over {target} in {amount} deal.", "The purchase should close in {month}."),
            ("{target} sold to {buyer} for {amount}.", "The deal still needs approval in {city}."),
        ),
    ),
    EventKind(
        "election", _election,
        facts=(
            ("{winner} has been elected mayor of {city} after a close race, officials said on {day}.",
             "Voters in {city} chose {winner} as their new mayor on {day}, ending a long campaign.",
             "On {day}, {winner} won the race to become the next mayor of {city}."),
            ("{winner} won {share} percent of the vote, ahead of {loser}.",
             "With {share} percent of the vote, {winner} beat {loser}, who had led in early polls.",
             "{loser} came second after {winner} took {share} percent of the votes."),
            ("Turnout was {turnout} percent, election officials said, higher than at the last vote.",
             "About {turnout} percent of voters took part in the election, officials said."),
        ),
        details=(("During the campaign, {winner} promised to build {homes} new homes.", "{winner} promised {homes} new homes."),
                 ("{loser} congratulated {winner} in a short speech to supporters.", None),
                 ("The new mayor will take office in {month}.", "The new mayor takes office in {month}."),
                 ("Housing and public transport were the main issues in the campaign.", None)),
        highlights=(
            ("{winner} elected mayor of {city} with {share} percent of the vote.",),
            ("{winner} beats {loser} to become mayor of {city}.", "Turnout was {turnout} percent."),
            ("{city} elects {winner} as mayor.", "{winner} took {share} percent, ahead of {loser}.",
             "Turnout was {turnout} percent."),
        ),
    ),
    EventKind(
        "storm", _storm,
        facts=(
            ("At least {deaths} people were killed when {storm} hit {place} on {day}.",
             "{storm} struck {place} on {day}, killing at least {deaths} people and damaging many buildings.",
             "On {day}, {storm} swept across {place}, leaving at least {deaths} people dead."),
            ("About {homes} homes were left without power after trees fell on lines.",
             "Power was cut to around {homes} homes, the energy company said."),
            ("Winds reached {wind} kilometres per hour, according to the weather service.",
             "The weather service recorded winds of up to {wind} kilometres per hour."),
        ),
        details=(("Schools in {place} will stay closed for {days} days.", "Schools in {place} closed for {days} days."),
                 ("Repairs could cost {amount}, according to {mayor}, the mayor of {place}.", "Repairs could cost {amount}, says mayor {mayor}."),
                 ("Rescue teams worked through the night to clear roads and reach people in their homes.", None),
                 ("Trains and flights were cancelled for most of the day.", None)),
        highlights=(
            ("{storm} kills {deaths} people in {place}.", "About {homes} homes lose power."),
            ("At least {deaths} dead as {storm} hits {place}.",),
            ("{storm} hits {place} with winds of {wind} kilometres per hour.", "At least {deaths} people killed.",
             "About {homes} homes without power."),
        ),
    ),
    EventKind(
        "match", _match,
        facts=(
            ("{winner} beat {loser} {wgoals}-{lgoals} in {comp} on {day}.",
             "On {day}, {winner} won {wgoals}-{lgoals} against {loser} in {comp}.",
             "{loser} lost {lgoals}-{wgoals} to {winner} in {comp} on {day}."),
            ("{scorer} scored the winning goal after {minute} minutes.",
             "The winning goal came from {scorer} after {minute} minutes, with a shot from close range."),
            ("A crowd of {crowd} watched the game, the largest at the ground this season.",
             "{crowd} fans were at the stadium for the game."),
        ),
        details=(("{loser} coach {coach} said the team had played well but made too many mistakes.", "{loser} coach {coach} blames mistakes."),
                 ("{winner} have now won {wins} games in a row.", "{winner} have won {wins} in a row."),
                 ("Both teams had good chances in the first half but could not score.", None),
                 ("The game was stopped for ten minutes in the second half because of heavy rain.", None)),
        highlights=(
            ("{winner} beat {loser} {wgoals}-{lgoals} in {comp}.", "{scorer} scores the winning goal."),
            ("{scorer} goal gives {winner} win over {loser}.",),
            ("{winner} win {wgoals}-{lgoals} against {loser}.",
             "{scorer} scores after {minute} minutes in front of {crowd} fans."),
        ),
    ),
    EventKind(
        "launch", _launch,
        facts=(
            ("{company} unveiled the {product}, a new {kind}, at an event in {city} on {day}.",
             "On {day}, {company} showed off its new {kind}, the {product}, at a large event in {city}.",
             "{company} launched a {kind} called the {product} in {city} on {day}."),
            ("The {product} will cost {price}, the company said.",
             "It will sell for {price}, a little more than the last model."),
            ("It goes on sale in {month} in most countries.", "The {kind} will reach shops in {month}."),
        ),
        details=(("{designer}, who leads the design team, said the {kind} took {years} years to build.", "The {kind} took {years} years to build, says {designer}."),
                 ("{company} sold about {units} devices last year.", "{company} sold {units} devices last year."),
                 ("Reviewers who tried the {kind} said the battery lasted a long time.", None),
                 ("The company hopes the new model will help it win back younger customers.", None)),
        highlights=(
            ("{company} launches {product} {kind} for {price}.",),
            ("{company} unveils the {product} in {city}.",
             "The new {kind} costs {price} and goes on sale in {month}."),
            ("New {product} {kind} from {company} will cost {price}.",),
        ),
    ),
    EventKind(
        "study", _study,
        facts=(
            ("Researchers at the {uni} say {treatment} can reduce {outcome} by {pct} percent.",
             "A study by the {uni} found that {treatment} cut {outcome} by {pct} percent.",
             "{Treatment} reduced {outcome} by {pct} percent, according to a study from the {uni}."),
            ("The team followed {count} people for {months} months.",
             "The study involved {count} volunteers over a period of {months} months."),
            ("The work was led by professor {lead} and a small team of doctors.",
             "{lead}, the professor who led the study, said more work was needed."),
        ),
        details=(("The results were published on {day} in a medical journal.", "The results were published on {day}."),
                 ("The study cost about {amount} and was paid for by the government.", "The study cost {amount}."),
                 ("Doctors said the findings were promising but should be checked by other teams.", None),
                 ("Earlier studies had found smaller effects.", None)),
        highlights=(
            ("{Treatment} cuts {outcome} by {pct} percent, {uni} study finds.",),
            ("Study of {count} people finds {treatment} reduces {outcome}.",
             "The research was led by {lead} at the {uni}."),
            ("{uni} study links {treatment} to a {pct} percent drop in {outcome}.",),
        ),
    ),
    EventKind(
        "ruling", _ruling,
        facts=(
            ("A court in {city} on {day} fined {company} {fine} for {offence}.",
             "{company} was ordered to pay {fine} for {offence}, a court in {city} ruled on {day}.",
             "On {day}, judges in {city} found {company} guilty of {offence} and fined it {fine}."),
            ("Judge {judge} said the company had ignored repeated warnings.",
             "{judge}, the judge in the case, called the behaviour of the company serious."),
            ("{company} has {days} days to appeal against the decision.",
             "The company can appeal within {days} days, the court said."),
        ),
        details=(("A lawyer for {company}, {lawyer}, said the firm was disappointed.", "Lawyer {lawyer} says {company} is disappointed."),
                 ("The case began in {month} {year} after complaints from customers.", "The case began in {month} {year}."),
                 ("Customers who lost money may now be able to claim it back.", None),
                 ("It is one of the largest fines of its kind.", None)),
        highlights=(
            ("{company} fined {fine} for {offence}.",),
            ("Court in {city} orders {company} to pay {fine}.", "The company has {days} days to appeal."),
            ("Judge {judge} fines {company} {fine} for {offence}.",),
        ),
    ),
    EventKind(
        "strike", _strike,
        facts=(
            ("About {count} {workers} in {city} began a {days}-day strike on {day}.",
             "On {day}, {count} {workers} walked out in {city} at the start of a {days}-day strike.",
             "A {days}-day strike by {count} {workers} began in {city} on {day}."),
            ("They want a pay rise of {pct} percent from {employer}.",
             "The union is asking {employer} for {pct} percent more pay."),
            ("Union leader {leader} said talks had failed after weeks of meetings.",
             "{leader}, who leads the union, said workers had no choice."),
        ),
        details=(("{employer} said it had offered {offer} percent and called the demand unrealistic.", "{employer} has offered {offer} percent."),
                 ("Services across {city} are expected to be badly disrupted.", "Services in {city} disrupted."),
                 ("It is the first strike of its kind in {city} for many years.", None),
                 ("Both sides said they were ready to return to talks.", None)),
        highlights=(
            ("{count} {workers} strike in {city} over pay.", "They want a {pct} percent rise from {employer}."),
            ("{Workers} in {city} begin {days}-day strike.",),
            ("{days}-day strike by {workers} hits {city}.", "Union led by {leader} demands {pct} percent more pay."),
        ),
    ),
    EventKind(
        "results", _results,
        facts=(
            ("{company} said on {day} that its profit for the {quarter} quarter {rose} {pct} percent to {profit}.",
             "Profit at {company} {rose} {pct} percent to {profit} in the {quarter} quarter, it said on {day}.",
             "On {day}, {company} reported that {quarter} quarter profit {rose} {pct} percent to {profit}."),
            ("{Role} {ceo} said the result was mainly due to {reason}.",
             "{ceo}, the {role}, put the result down to {reason}."),
            ("The company, which is based in {city}, employs {staff} people.",
             "Based in {city}, {company} has {staff} staff in several countries."),
        ),
        details=(("Shares in {company} moved little after the figures were published.", "Shares in {company} moved little."),
                 ("The company did not change its forecast for the year.", "The forecast for the year is unchanged."),
                 ("Analysts had expected a smaller change.", None),
                 ("The company will publish its next figures in three months.", None)),
        highlights=(
            ("{company} profit {rose} {pct} percent to {profit}.",),
            ("{Quarter} quarter profit at {company} {rose} to {profit}.", "{Role} {ceo} points to {reason}."),
            ("Profit at {company} {rose} {pct} percent.", "The result was due to {reason}, says {ceo}."),
        ),
    ),
    EventKind(
        "appointment", _appointment,
        facts=(
            ("{company} has named {new} as its new {role}, the company said on {day}.",
             "On {day}, {company} said {new} would become its next {role}.",
             "{new} will be the next {role} of {company}, the board said on {day}."),
            ("{new} replaces {old}, who has held the job since {year}.",
             "{old}, who took the job in {year}, is stepping down and will be replaced by {new}."),
            ("{new} joins from {prev} and will start in {month}.",
             "{new} currently works at {prev} and starts the new job in {month}."),
        ),
        details=(("Under {old}, sales at {company} grew by {pct} percent.", "Sales grew {pct} percent under {old}."),
                 ("The company is based in {city} and has offices in many countries.", "{company} is based in {city}."),
                 ("The board thanked the outgoing {role} for many years of service.", None),
                 ("The search for a new leader took almost a year.", None)),
        highlights=(
            ("{new} named {role} of {company}.", "{new} replaces {old} in {month}."),
            ("{company} appoints {new} from {prev} as {role}.",),
            ("{old} to step down as {role} of {company}.", "{new} will take over in {month}."),
        ),
    ),
)

# Background sentences that can open an article, and context sentences placed anywhere; their slots are
# drawn fresh, so they mention other people, firms, places and numbers than the event.
LEAD_DISTRACTORS = (
    "It has been a busy week in {city}, where several large companies reported news on the same day.",
    "{city} has been in the news for much of {month}, as people there worry about jobs and prices.",
    "For months, people in {city} have been talking about rising costs and what they mean for families.",
    "Markets were quiet on {day} as traders waited for new figures on prices and jobs.",
    "The past year has been difficult for many firms in {city}, where costs have risen by {pct} percent.",
    "In {year}, {company} paid {amount} for a rival in {city}, in a deal that drew wide attention.",
)
DISTRACTORS = (
    "{person}, a {job} from {city}, said the mood in the city was calm and most people were getting on with life.",
    '"{quote}," said {person}, who has worked for {company} for many years.',
    "Separately, {company} said on {day} that it would open {small} new offices in {city} over the next two years.",
    "Earlier this year, {company} reported sales of {amount}, a little higher than most analysts had expected.",
    "Prices in {city} have risen by {pct} percent over the past year, putting pressure on families and small firms.",
    "{person}, a {job}, said people in the area were waiting to see what happens next before making any plans.",
    "Analysts at {company} expect the economy to grow by {pct} percent in {year}, slightly less than last year.",
    "The population of {city} has grown to about {big} people, and many new homes are being built.",
    "Last {month}, {person} said that similar plans in {city} had failed because of a lack of money.",
    "{company}, which was not involved, said in a statement on {day} that it expected no effect on its business.",
    "In {year}, {company} bought {company2} for {amount}, one of the biggest deals of that year.",
    "A survey by {company} found that {pct} percent of people in {city} were worried about the cost of living.",
)


def _distractor_slots(d: _Draw, template: str) -> dict:
    """Draws only the slots `template` uses, so that long articles do not run out of fresh names."""
    draw = dict(person=d.person, job=lambda: d.rng.choice(JOBS), city=d.city, company=d.company,
                company2=d.company, quote=lambda: d.rng.choice(QUOTES), small=lambda: d.pct(3, 40),
                big=lambda: d.count(200000, 3000000, 10000),
                amount=d.money, pct=d.pct, year=d.year, month=d.month, day=d.day)
    # sorted: set order changes with PYTHONHASHSEED, and the draw order must not
    return {name: draw[name]() for name in sorted(template_slots(template))}


def _fill(template: str, slots: dict) -> str:
    text = template.format(**slots)
    return text[0].upper() + text[1:]  # a slot such as "{count} nurses" may open the sentence


def _with_capitals(slots: dict) -> dict:
    """Adds "{Role}" for "{role}" and so on: the same value with a capital, for slots that open a sentence."""
    return {**slots, **{k[0].upper() + k[1:]: v[0].upper() + v[1:] for k, v in slots.items()}}


def _ordered_slots(templates) -> list[str]:
    """The slot names `templates` use, lower-cased, in order of first use (`template_slots` is a set)."""
    names = (name.lower() for t in templates for _, name, _, _ in string.Formatter().parse(t) if name)
    return list(dict.fromkeys(names))


def _record(rng: random.Random, n_distractors: int, entity_pool: int | None) -> tuple[str, str, dict]:
    """(article, highlights, facts) of one generated article; see `generate` for the facts."""
    d = _Draw(rng, entity_pool)
    kind = rng.choice(EVENT_KINDS)
    event = kind.slots(d)
    slots = _with_capitals(event)
    phrasing = rng.randrange(len(kind.facts[0]))  # how the main fact is put; it decides the headline's form
    facts = [_fill(kind.facts[0][phrasing], slots)] + [_fill(rng.choice(p), slots) for p in kind.facts[1:]]
    if rng.random() < 0.3:  # the main fact is not always stated first
        facts[0], facts[1] = facts[1], facts[0]
    else:
        facts[1:] = rng.sample(facts[1:], len(facts) - 1)
    picked = sorted(rng.sample(range(len(kind.details)), rng.randint(2, 4)))
    others = [_fill(kind.details[i][0], slots) for i in picked]
    k = max(0, n_distractors + rng.choice((-1, 0, 1, 2)))
    opener = []
    distractor_values: list[str] = []  # in draw order; recording them draws nothing from rng
    if k and rng.random() < 0.5:
        template = rng.choice(LEAD_DISTRACTORS)
        drawn = _distractor_slots(d, template)
        distractor_values += drawn.values()
        opener = [_fill(template, drawn)]
        k -= 1
    for template in rng.sample(DISTRACTORS, min(k, len(DISTRACTORS))):
        drawn = _distractor_slots(d, template)
        distractor_values += drawn.values()
        others.append(_fill(template, drawn))
    rng.shuffle(others)
    # At most three other sentences go between the facts and the rest after them: models truncate long
    # inputs (to 256 tokens, say), and a key fact cut off would make its highlight unlearnable.
    between = rng.randint(1, min(3, len(others)))
    body = list(facts)
    for sentence in others[:between]:
        body.insert(rng.randint(1, len(body) - 1), sentence)
    body = opener + body + others[between:]

    # Nothing here is drawn: the headline follows the main fact's phrasing and each included detail
    # with a highlight adds its sentence, so the generator's own rules applied to the article give
    # exactly the reference.
    templates = kind.highlights[phrasing] + tuple(kind.details[i][1] for i in picked if kind.details[i][1])
    highlights = "\n".join(_fill(t, slots) for t in templates)
    record_facts = {
        "kind": kind.name,
        "event": dict(event),
        "reference": list(dict.fromkeys(event[name] for name in _ordered_slots(templates))),
        "distractors": list(dict.fromkeys(distractor_values)),
    }
    return " ".join(body), highlights, record_facts


def generate(split: str, n: int, seed: int, *, n_distractors: int = 3,
             entity_pool: int | None = None) -> list[dict]:
    """Returns `n` generated records {"id", "article", "highlights", "facts"} for `split`, the same for the
    same arguments (`stream` yields the same records one at a time).

    `facts` records what the generator knows and a reader of the text would have to guess, so that
    `kd.metrics.faithfulness` can check a summary's names and numbers against the truth: {"kind": the event kind's
    name, "event": {slot: value} for every slot drawn for the event (lower-case slot names, values as they
    are filled in, e.g. "Ana Ruiz", "$20 million", "4,500", "bus drivers"; a detail's slots are in the
    article only when that detail was picked), "reference": the values of the
    slots the highlights use, in order of first use, each once, "distractors": every value drawn for the
    distractor sentences (names, places, numbers, jobs, quotes), in draw order, each once}. A distractor
    value may equal an event value (numbers are drawn independently); names never do, unless the name
    lists run out.

    `n_distractors` is the typical number of distractor sentences per article: each article draws from one
    fewer to two more, so article lengths vary. `entity_pool` caps how many first names, last names,
    companies and cities are drawn from (None: all of them). Fewer names means each name token is seen
    more often, so a small model learns to copy names from the article within a CPU budget; with the
    full lists (60 first and 60 last names) each name is too rare for that, and a small model learns the
    summary templates but guesses the names.
    """
    return list(stream(split, n, seed, n_distractors=n_distractors, entity_pool=entity_pool))


def stream(split: str, n: int, seed: int, *, n_distractors: int = 3,
           entity_pool: int | None = None) -> Iterator[dict]:
    """`generate`'s records one at a time (the arguments are checked here, before the first record)."""
    if not isinstance(split, str) or not split:
        raise ConfigError(f"split: expected a non-empty string, got {split!r}")
    for key, value in (("n", n), ("seed", seed), ("n_distractors", n_distractors)):
        if not isinstance(value, int) or isinstance(value, bool):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
    if entity_pool is not None and (not isinstance(entity_pool, int) or entity_pool < 4):
        raise ConfigError(f"entity_pool: expected an integer >= 4 or None, got {entity_pool!r}")
    if n < 0 or n_distractors < 0:
        raise ConfigError(f"n and n_distractors must be >= 0, got n={n}, n_distractors={n_distractors}")
    return _records(split, n, seed, n_distractors, entity_pool)


def _records(split: str, n: int, seed: int, n_distractors: int, entity_pool: int | None) -> Iterator[dict]:
    rng = random.Random(f"{seed}-{split}")
    for i in range(n):
        article, highlights, facts = _record(rng, n_distractors, entity_pool)
        yield {"id": f"builtin-{split}-{seed}-{i:06d}", "article": article, "highlights": highlights,
               "facts": facts}


def template_slots(template: str) -> set[str]:
    """The slot names a template uses, lower-cased ("{Role}" and "{role}" are the same slot)."""
    return {name.lower() for _, name, _, _ in string.Formatter().parse(template) if name}


# ----------------------------------------------------------------------------- the ceiling
# The generator's own rules run backwards: find the event's sentences in an article, read their slots,
# and write the highlights as `_record` does. What it scores against the references is the task's
# ceiling (kd.data.builtin.rule_summary; tests check it reproduces them).

# What a slot's value looks like where the generator draws a number or an amount; any other value is
# a run of text without a sentence end or a ", " (numbers are "4,500", amounts "$1.5 billion").
_NUMBER, _AMOUNT, _TEXT = r"[0-9][0-9,]*", r"\$[0-9.]+(?: million| billion)?", r"(?:(?!\. |, ).)+?"
_SLOT_VALUES = {**dict.fromkeys(("amount", "fine", "profit", "price"), _AMOUNT),
                **dict.fromkeys(("pct", "share", "turnout", "homes", "deaths", "wind", "days", "staff", "count",
                                 "months", "wgoals", "lgoals", "minute", "crowd", "wins", "years", "units",
                                 "offer", "year"), _NUMBER),
                **{slot: "(?i:" + "|".join(map(re.escape, values)) + ")" for slot, values in (
                    ("role", ROLES), ("rose", ("rose", "fell")), ("quarter", QUARTERS), ("day", DAYS),
                    ("month", MONTHS))}}


def _pattern(template: str) -> re.Pattern:
    """A regex matching `template` filled in as one whole sentence of an article, a group per slot (a
    slot used twice must match the same text twice); the first letter may have been capitalized. A
    capitalized slot ("{Role}") is a group "<slot>__cap": its value with the first letter raised."""
    parts, seen = [r"(?:^|(?<=[.!?\"] ))"], set()
    for i, (literal, name, _, _) in enumerate(string.Formatter().parse(template)):
        if i == 0 and literal:
            literal_re = f"[{literal[0].upper()}{literal[0].lower()}]" + re.escape(literal[1:])
        else:
            literal_re = re.escape(literal)
        parts.append(literal_re)
        if name:
            key = name.lower() + ("__cap" if name[0].isupper() else "")
            parts.append(f"(?P={key})" if key in seen else f"(?P<{key}>{_SLOT_VALUES.get(name.lower(), _TEXT)})")
            seen.add(key)
    return re.compile("".join(parts) + r"(?= |$)")


def _slot_values(match: re.Match) -> dict[str, str]:
    """A match's {slot: value}, capitalized slots' values with their first letter lowered again."""
    return {k.removesuffix("__cap"): (v[0].lower() + v[1:] if k.endswith("__cap") else v)
            for k, v in match.groupdict().items()}


def _patterns(kind: EventKind) -> tuple[list[list[re.Pattern]], list[re.Pattern]]:
    return ([[_pattern(t) for t in paraphrases] for paraphrases in kind.facts],
            [_pattern(sentence) for sentence, _ in kind.details])


_COMPILED: dict[str, tuple] = {}


def rule_summary(article: str) -> Optional[str]:
    """The highlights the generator's rules give for `article` (one of its own), or None when no event
    kind's main fact is found: the best any model can do, so its ROUGE against the references is the
    task's ceiling."""
    for kind in EVENT_KINDS:
        facts, details = _COMPILED.setdefault(kind.name, _patterns(kind))
        slots: dict[str, str] = {}
        phrasing = None
        for f, paraphrases in enumerate(facts):
            for p, pattern in enumerate(paraphrases):
                if m := pattern.search(article):
                    slots.update(_slot_values(m))
                    phrasing = p if f == 0 else phrasing
                    break
        if phrasing is None:
            continue
        found = []
        for i, pattern in enumerate(details):
            if m := pattern.search(article):
                slots.update(_slot_values(m))
                found.append(i)
        templates = kind.highlights[phrasing] + tuple(kind.details[i][1] for i in found if kind.details[i][1])
        filled = _with_capitals(slots)
        try:
            return "\n".join(_fill(t, filled) for t in templates)
        except KeyError:  # a slot the article did not show (cannot happen for the generator's own)
            return None
    return None


@register("builtin")
def load(split: str, data) -> Iterator[dict]:
    """The data source `builtin`: this generator's records, `data.builtin.<split>_size` of them, seeded by
    `data.seed` (settings: data.builtin)."""
    from kd.data.sources import articles_only

    b = data.builtin
    records = stream(split, getattr(b, f"{split}_size"), data.seed, n_distractors=b.n_distractors,
                     entity_pool=b.entity_pool)
    return articles_only(records) if split == "unlabeled" else records
