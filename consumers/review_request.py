"""review-request: a week after ``order.completed``, ask the customer to review what they bought.

The delay lives in the broker (topology: a delay queue in front of ``woo.review-request``), so the
handler runs seven days late and simply sends. Whether the order was refunded or cancelled in the
meantime is not in the event, and asking the store would couple this consumer to its REST API;
the email goes out either way.
"""

from __future__ import annotations

from consumers.adapters.mail import Mailer, mailer_from_settings
from consumers.runtime.handler import AnyEnvelope, Delivery, Handler, HandlerSpec
from consumers.templates import address, compose, order_context, render_email
from contracts.orders import OrderData
from fleet.settings import Settings


def business_key(event: AnyEnvelope) -> str:
    """One review request per order, however often its completion is announced."""
    return f"review-request:{event.data.id}@{event.source}"


SPEC = HandlerSpec(business_key=business_key)


def review_url(shop_url: str, product_id: int) -> str:
    # The order carries no permalinks; WordPress finds a product by id, and WooCommerce opens
    # the reviews tab for the #reviews fragment.
    return f"{shop_url}/?post_type=product&p={product_id}#reviews"


class ReviewRequest:
    def __init__(self, mailer: Mailer, *, sender: str) -> None:
        self.mailer, self.sender = mailer, sender

    async def __call__(self, event: AnyEnvelope, delivery: Delivery) -> None:
        order: OrderData = event.data
        email = order.customer.email or order.billing.email
        if not email:
            delivery.log.info("order %s has no customer email address; no review request", order.id)
            return
        context = order_context(order, event.source)
        products: dict[int, dict[str, str]] = {}
        for line in order.line_items:
            # Variations are reviewed on their parent product; id 0 is a deleted product.
            if line.product_id and line.product_id not in products:
                url = review_url(context["shop_url"], line.product_id)
                products[line.product_id] = {"name": line.name, "review_url": url}
        if not products:
            delivery.nothing_to_do("order %s has no product left to review; nothing sent", order.id)
            return
        message = compose(
            render_email("review_request", products=list(products.values()), **context),
            sender=self.sender,
            to=[address(f"{order.billing.first_name} {order.billing.last_name}", email)],
            key=delivery.business_key,
        )
        await self.mailer.send(message)
        delivery.log.info("sent review request for order %s (%d products)", order.id, len(products))

    async def aclose(self) -> None:
        await self.mailer.aclose()


def build(settings: Settings) -> Handler:
    return ReviewRequest(mailer_from_settings(settings), sender=settings.mail_from)
