"""Fixed vocabularies of the synthetic world: categories, names, countries, email domains.

Kept apart from the generator so that the shape of the shop (what it sells, where its customers live)
can be read and changed in one place.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Category:
    name: str
    median_price_cents: int
    price_spread: float  # sigma of the log-normal price around the median
    replenish_days: int  # 0: not a consumable; else the typical days between re-orders
    nouns: tuple[str, ...]
    variant_kind: str  # what the variants differ in: size, color, weight, format


CATEGORIES: tuple[Category, ...] = (
    Category("Apparel", 4500, 0.45, 0, ("T-Shirt", "Hoodie", "Jacket", "Shirt", "Sweater", "Dress", "Jeans"), "size"),
    Category("Footwear", 9000, 0.35, 0, ("Sneaker", "Boot", "Sandal", "Loafer", "Runner"), "size"),
    Category("Accessories", 3500, 0.55, 0, ("Cap", "Belt", "Scarf", "Wallet", "Tote", "Backpack"), "color"),
    Category("Beauty", 2800, 0.40, 60, ("Lipstick", "Mascara", "Eyeliner", "Blush", "Nail Polish"), "color"),
    Category("Skincare", 3800, 0.40, 45, ("Serum", "Moisturizer", "Cleanser", "Sunscreen", "Toner"), "size"),
    Category("Coffee", 1800, 0.30, 30, ("Espresso Beans", "Filter Roast", "Cold Brew Pack", "Decaf Blend"), "weight"),
    Category("Home", 5500, 0.55, 0, ("Candle", "Throw", "Vase", "Cushion", "Lamp", "Rug"), "color"),
    Category("Kitchen", 4000, 0.50, 0, ("Pan", "Knife", "Mug", "Grinder", "Kettle", "Board"), "color"),
    Category("Outdoor", 8000, 0.50, 0, ("Tent", "Sleeping Bag", "Headlamp", "Bottle", "Trail Pack"), "size"),
    Category("Fitness", 5000, 0.45, 0, ("Yoga Mat", "Dumbbell", "Resistance Band", "Foam Roller"), "weight"),
    Category("Books", 2000, 0.30, 0, ("Cookbook", "Novel", "Field Guide", "Journal"), "format"),
    Category("Pet Supplies", 3000, 0.40, 30, ("Dog Food", "Cat Litter", "Chew Toy", "Pet Bed", "Treats"), "weight"),
)

# Categories bought together: a line may be the "companion" of another line's product.
COMPLEMENTS: dict[str, tuple[str, ...]] = {
    "Apparel": ("Footwear", "Accessories"),
    "Footwear": ("Apparel", "Accessories"),
    "Accessories": ("Apparel",),
    "Beauty": ("Skincare",),
    "Skincare": ("Beauty",),
    "Coffee": ("Kitchen", "Books"),
    "Home": ("Kitchen",),
    "Kitchen": ("Coffee", "Home"),
    "Outdoor": ("Fitness", "Apparel"),
    "Fitness": ("Apparel", "Outdoor"),
    "Books": ("Coffee",),
    "Pet Supplies": ("Home",),
}

VARIANT_VALUES: dict[str, tuple[str, ...]] = {
    "size": ("XS", "S", "M", "L", "XL"),
    "color": ("Black", "White", "Sand", "Olive", "Navy", "Rust"),
    "weight": ("250g", "500g", "1kg", "2kg"),
    "format": ("Paperback", "Hardcover", "Ebook"),
}

ADJECTIVES = (
    "Classic", "Everyday", "Organic", "Essential", "Premium", "Lightweight", "Vintage", "Modern",
    "Recycled", "Signature", "Heritage", "Urban", "Alpine", "Coastal", "Studio", "Nordic",
)

VENDORS = ("Northwind", "Blue Harbor", "Atlas & Co", "Fernwood", "Kestrel", "Lumen Goods", "Oakline", "Tidewater")

FIRST_NAMES = (
    "James", "Mary", "Robert", "Patricia", "John", "Jennifer", "Michael", "Linda", "David", "Elizabeth",
    "William", "Barbara", "Richard", "Susan", "Joseph", "Jessica", "Thomas", "Sarah", "Charles", "Karen",
    "Daniel", "Lisa", "Matthew", "Nancy", "Anthony", "Sandra", "Mark", "Ashley", "Paul", "Emily",
    "Steven", "Donna", "Andrew", "Michelle", "Joshua", "Carol", "Kevin", "Amanda", "Brian", "Melissa",
    "George", "Deborah", "Timothy", "Stephanie", "Ronald", "Rebecca", "Jason", "Laura", "Ryan", "Sharon",
    "Jacob", "Cynthia", "Gary", "Kathleen", "Nicholas", "Amy", "Eric", "Angela", "Jonathan", "Helen",
    "Lukas", "Emma", "Leon", "Mia", "Oliver", "Chloe", "Noah", "Sophie", "Liam", "Olivia",
    "Hugo", "Lea", "Louis", "Manon", "Felix", "Hannah", "Finn", "Lena", "Ella", "Mateo",
)

LAST_NAMES = (
    "Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis", "Rodriguez", "Martinez",
    "Hernandez", "Lopez", "Gonzalez", "Wilson", "Anderson", "Thomas", "Taylor", "Moore", "Jackson", "Martin",
    "Lee", "Perez", "Thompson", "White", "Harris", "Sanchez", "Clark", "Ramirez", "Lewis", "Robinson",
    "Walker", "Young", "Allen", "King", "Wright", "Scott", "Torres", "Nguyen", "Hill", "Flores",
    "Green", "Adams", "Nelson", "Baker", "Hall", "Rivera", "Campbell", "Mitchell", "Carter", "Roberts",
    "Muller", "Schmidt", "Schneider", "Fischer", "Weber", "Dubois", "Moreau", "Laurent", "Bernard", "Petit",
    "Evans", "Murphy", "Kelly", "Walsh", "OConnor", "Byrne", "Wood", "Hughes", "Edwards", "Collins",
)

EMAIL_DOMAINS = (
    "gmail.com", "yahoo.com", "outlook.com", "icloud.com", "hotmail.com", "proton.me", "aol.com", "fastmail.com",
)


@dataclass(frozen=True)
class Country:
    code: str
    name: str
    weight: float
    currency: str
    fx_per_usd: float  # presentment currency units per shop-currency (USD) unit
    tz_offsets: tuple[int, ...]  # hours from UTC, one picked per customer
    tz_names: tuple[str, ...]
    tax_rate: float
    cities: tuple[tuple[str, str, str], ...]  # (city, province code, zip)


COUNTRIES: tuple[Country, ...] = (
    Country("US", "United States", 0.60, "USD", 1.0, (-5, -6, -7, -8),
            ("America/New_York", "America/Chicago", "America/Denver", "America/Los_Angeles"), 0.07,
            (("New York", "NY", "10001"), ("Chicago", "IL", "60601"), ("Denver", "CO", "80202"),
             ("Los Angeles", "CA", "90012"), ("Austin", "TX", "73301"), ("Seattle", "WA", "98101"))),
    Country("CA", "Canada", 0.10, "CAD", 1.36, (-5, -8), ("America/Toronto", "America/Vancouver"), 0.13,
            (("Toronto", "ON", "M5H 2N2"), ("Vancouver", "BC", "V6B 1A1"), ("Montreal", "QC", "H2Y 1C6"))),
    Country("GB", "United Kingdom", 0.10, "GBP", 0.79, (0,), ("Europe/London",), 0.20,
            (("London", "ENG", "EC1A 1BB"), ("Manchester", "ENG", "M1 1AE"), ("Edinburgh", "SCT", "EH1 1YZ"))),
    Country("DE", "Germany", 0.07, "EUR", 0.92, (1,), ("Europe/Berlin",), 0.19,
            (("Berlin", "BE", "10115"), ("Munich", "BY", "80331"), ("Hamburg", "HH", "20095"))),
    Country("FR", "France", 0.05, "EUR", 0.92, (1,), ("Europe/Paris",), 0.20,
            (("Paris", "IDF", "75001"), ("Lyon", "ARA", "69001"), ("Marseille", "PAC", "13001"))),
    Country("AU", "Australia", 0.08, "AUD", 1.52, (10,), ("Australia/Sydney",), 0.10,
            (("Sydney", "NSW", "2000"), ("Melbourne", "VIC", "3000"), ("Brisbane", "QLD", "4000"))),
)

SHOP_CURRENCY = "USD"

HUBSPOT_OWNER_IDS = ("31562378", "31562379", "44102201", "44102202", "52910887", "52910888", "60011234", "60011235")
HUBSPOT_PRE_CUSTOMER_STAGES = ("subscriber", "lead", "marketingqualifiedlead", "salesqualifiedlead", "opportunity", "other")
HUBSPOT_LEAD_STATUSES = ("NEW", "OPEN", "IN_PROGRESS", "OPEN_DEAL", "UNQUALIFIED", "ATTEMPTED_TO_CONTACT", "CONNECTED", "BAD_TIMING")

# Klaviyo metric names the simulator serves, in the order of their internal code.
METRICS = (
    "Received Email", "Opened Email", "Clicked Email", "Bounced Email", "Unsubscribed", "Marked Email as Spam",
    "Viewed Product", "Added to Cart", "Started Checkout",
)
