"""The business's vocabularies. Codes in the state index into these tuples."""

from __future__ import annotations

import numpy as np

SEGMENTS = ("basic", "plus", "premium")
SEGMENT_SHARE = np.array([0.55, 0.30, 0.15])

REGIONS = ("EU-West", "EU-Central", "UK", "NA-East", "NA-West")
REGION_SHARE = np.array([0.25, 0.25, 0.15, 0.20, 0.15])
CURRENCIES = ("EUR", "GBP", "USD")
REGION_CURRENCY = np.array([0, 0, 1, 2, 2])
# Phone numbers follow the region's country format: (country prefix, digits after it).
REGION_PHONE = (("+33 6", 8), ("+49 15", 9), ("+44 7", 9), ("+1 ", 10), ("+1 ", 10))

ACQUISITION_CHANNELS = ("organic", "paid_search", "social", "referral", "affiliate", "email")
ACQUISITION_SHARE = np.array([0.30, 0.22, 0.18, 0.10, 0.10, 0.10])

PAYMENT_METHODS = ("card", "paypal", "bank_transfer", "klarna", "apple_pay")
PAYMENT_METHOD_SHARE = np.array([0.45, 0.25, 0.08, 0.12, 0.10])
# Log-odds shift of a charge failing, per method: bank transfers and buy-now-pay-later fail more.
PAYMENT_METHOD_RISK = np.array([0.0, -0.5, 0.6, 0.9, -0.6])

CATEGORIES = ("electronics", "fashion", "home", "beauty", "sports", "books", "grocery")
CATEGORY_SHARE = np.array([0.14, 0.22, 0.16, 0.14, 0.10, 0.09, 0.15])

DEVICES = ("web", "ios", "android")
DEVICE_SHARE = np.array([0.45, 0.30, 0.25])

EVENT_TYPES = ("session_start", "page_view", "login", "feature_use", "search", "add_to_cart")
# Events after a session's first (always session_start).
EVENT_TYPE_SHARE = np.array([0.0, 0.45, 0.12, 0.15, 0.16, 0.12])
PAGES = ("home", "product", "category", "cart", "account", "help", "checkout")
PAGE_SHARE = np.array([0.20, 0.35, 0.20, 0.08, 0.07, 0.04, 0.06])
FEATURES = ("wishlist", "reviews", "recommendations", "order_tracking", "price_alerts", "compare")
FEATURE_SHARE = np.array([0.22, 0.18, 0.22, 0.20, 0.08, 0.10])

TICKET_CATEGORIES = ("delivery", "product", "account", "billing", "returns")
TICKET_CATEGORY_SHARE = np.array([0.38, 0.25, 0.15, 0.10, 0.12])
PRIORITIES = ("low", "medium", "high", "urgent")
PRIORITY_SHARE = np.array([0.40, 0.35, 0.20, 0.05])
PRIORITY_SPEED = np.array([1.5, 1.0, 0.6, 0.3])
TICKET_CHANNELS = ("email", "chat", "phone")
TICKET_CHANNEL_SHARE = np.array([0.50, 0.35, 0.15])
TICKET_CHANNEL_RESPONSE_HOURS = np.array([6.0, 0.15, 0.05])

MARKETING_CHANNELS = ("email", "push", "sms")
MARKETING_CHANNEL_SHARE = np.array([0.60, 0.25, 0.15])
MARKETING_OPEN_BASE = np.array([0.22, 0.12, 0.08])
INTERACTIONS = ("send", "open", "click", "offer", "redemption")
# Offer code stems: campaign offers, retention vouchers, loyalty rewards.
OFFER_STEMS = ("SAVE", "WINBACK", "LOYAL")

RETENTION_CAMPAIGNS = ("RET-VOUCHER", "RET-REENGAGE", "RET-LOYALTY")

ACTIONS = ("discount_voucher", "reengagement_email", "loyalty_reward")

# Hour-of-day weights for session starts (UTC): quiet nights, a lunch bump, a busy evening.
HOUR_WEIGHTS = np.array(
    [1, 0.6, 0.4, 0.3, 0.3, 0.5, 1, 2, 3, 3.5, 3.5, 4, 5, 4.5, 4, 4, 4.5, 5, 6, 7, 7.5, 6.5, 4, 2],
)
HOUR_SHARE = HOUR_WEIGHTS / HOUR_WEIGHTS.sum()

FIRST_NAMES = (
    "Emma", "Liam", "Olivia", "Noah", "Mia", "Lucas", "Sofia", "Elias", "Hannah", "Leon",
    "Amelia", "Oliver", "Chloe", "Louis", "Ava", "Mateo", "Lea", "Finn", "Isla", "Jonas",
    "Grace", "Arthur", "Zoe", "Felix", "Lina", "Hugo", "Nora", "Theo", "Clara", "Max",
    "Aisha", "Omar", "Priya", "Arjun", "Mei", "Kenji", "Fatima", "Yusuf", "Ana", "Diego",
    "Chiara", "Marco", "Ingrid", "Lars", "Zofia", "Piotr", "Camille", "Jules", "Maya", "Ethan",
    "Sara", "David", "Laura", "Daniel", "Julia", "Samuel", "Eva", "Adam", "Ines", "Tom",
)
LAST_NAMES = (
    "Smith", "Müller", "Martin", "Johnson", "Schmidt", "Bernard", "Williams", "Schneider",
    "Dubois", "Brown", "Fischer", "Thomas", "Jones", "Weber", "Robert", "Garcia", "Meyer",
    "Richard", "Miller", "Wagner", "Petit", "Davis", "Becker", "Durand", "Rodriguez", "Schulz",
    "Leroy", "Martinez", "Hoffmann", "Moreau", "Wilson", "Koch", "Simon", "Taylor", "Bauer",
    "Laurent", "Anderson", "Richter", "Lefebvre", "Clark", "Klein", "Michel", "Lewis", "Wolf",
    "Garnier", "Walker", "Neumann", "Rossi", "Young", "Schwarz", "Bianchi", "Hall", "Janssen",
    "De Vries", "Nowak", "Kowalski", "Novak", "Silva", "Santos", "Nguyen", "Kim", "Patel",
)
EMAIL_DOMAINS = (
    "gmail.com", "outlook.com", "yahoo.com", "icloud.com", "proton.me", "gmx.net", "web.de",
    "hotmail.co.uk", "orange.fr", "aol.com",
)
