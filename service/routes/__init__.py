"""One APIRouter per resource; routes parse, hand to the pool and encode."""
