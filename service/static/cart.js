// The shopper page's product cards: cart controls (add, remove, buy: the add_to_cart, remove_from_cart and
// purchase events) and how long the shopper looked at a product they opened (a view_item event with
// dwell_s, sent when they come back to this page: it shows again, gets focus or is touched; or leave it).

/**
 * Cart buttons for product cards. `post(type, product, category)` sends the event; `say(text)` tells the
 * shopper. A product shown twice (in the results and among the assistant's suggestions) shows one state.
 */
export function cartControls(post, say) {
  const cart = new Map(); // item_id -> "added" | "bought"

  function cardsOf(itemId) {
    return document.querySelectorAll(`.card[data-item="${CSS.escape(itemId)}"]`);
  }

  /** Show the cart state of the card's product on its buttons. */
  function sync(card) {
    const held = cart.get(card.dataset.item);
    const add = card.querySelector("button.add");
    add.textContent = held === "added" ? "Added ✓" : held === "bought" ? "Bought ✓" : "Add to cart";
    add.disabled = Boolean(held);
    card.querySelector("button.remove").hidden = held !== "added";
    card.querySelector("button.buy").hidden = held !== "added";
  }

  function change(type, product, category, button) {
    post(type, product, category);
    const card = button.closest(".card");
    if (type === "add_to_cart") {
      cart.set(product.item_id, "added");
      say(`Added ${product.title} to your cart.`);
    } else if (type === "remove_from_cart") {
      cart.delete(product.item_id);
      say(`Removed ${product.title} from your cart.`);
    } else {
      cart.set(product.item_id, "bought");
      say(`Bought ${product.title}. Thank you!`);
    }
    cardsOf(product.item_id).forEach(sync);
    // The pressed button may be gone now: keep the keyboard on the card.
    const next = { add_to_cart: "button.buy", remove_from_cart: "button.add" }[type];
    (next ? card.querySelector(next) : card.querySelector(".card-open")).focus();
  }

  return {
    /** The buttons for renderCard's `actions`; call sync(card) once the card is built. */
    actions(product, category) {
      const action = (label, className, type) => ({
        label,
        className,
        onClick: (button) => change(type, product, category, button),
      });
      return [
        action("Add to cart", "add", "add_to_cart"),
        action("Remove", "remove", "remove_from_cart"),
        action("Buy now", "buy", "purchase"),
      ];
    },
    sync,
  };
}

/** Time how long an opened product is looked at; `post(product, category, dwellS)` sends view_item. */
export function viewTracker(post) {
  let viewing = null; // {product, category, since}

  function done() {
    if (!viewing) return;
    const { product, category, since } = viewing;
    viewing = null;
    const dwellS = Math.min(3600, Math.round((performance.now() - since) / 100) / 10);
    post(product, category, dwellS);
  }

  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible") done();
  });
  addEventListener("focus", done);
  addEventListener("pagehide", done);
  // Back on this page without the browser saying so (a tab opened in the background): the next touch or key.
  addEventListener("pointerdown", done, true);
  addEventListener("keydown", done, true);

  return {
    opened(product, category) {
      done();
      viewing = { product, category, since: performance.now() };
    },
  };
}
