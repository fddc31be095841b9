// Drawing a box on the shopper's photo to search that area (when detection missed a garment). Pointer
// events, so mouse, pen and touch alike: a mouse or pen can drag at any time (a click without moving still
// selects a garment); a finger drags only while drawing is armed (the "Draw a box" button), since otherwise
// a swipe over the photo scrolls the page. The box goes out in pixels of the upload, not of the screen.

const MIN_DRAG_PX = 10; // on screen: a shorter drag is a tap
export const MIN_REGION_PX = 8; // in upload pixels: the service refuses smaller regions

/**
 * Let the shopper drag a box on `frame` (the .frame with the photo and a .draft element). `imageSize()`
 * answers the upload's [width, height] after EXIF orientation (the search response's image_size);
 * `armed()` whether a touch drag draws; `onRegion([x0, y0, x1, y1])` gets the box in upload pixels,
 * `onSmall()` runs for a box too small to search.
 */
export function enableDrawing(frame, { imageSize, armed, onRegion, onSmall }) {
  const draft = frame.querySelector(".draft");
  let drag = null; // {id, x, y, drawing}
  let swallowClick = false;

  const point = (event) => {
    const rect = frame.getBoundingClientRect();
    return {
      x: Math.max(0, Math.min(event.clientX - rect.left, rect.width)),
      y: Math.max(0, Math.min(event.clientY - rect.top, rect.height)),
    };
  };

  frame.addEventListener("pointerdown", (event) => {
    if (drag || !imageSize() || (event.pointerType === "mouse" && event.button !== 0)) return;
    if (event.pointerType === "touch" && !armed()) return; // a swipe scrolls the page
    drag = { id: event.pointerId, ...point(event), drawing: false };
    if (armed()) event.preventDefault(); // no focus change, no text selection
  });

  frame.addEventListener("pointermove", (event) => {
    if (!drag || event.pointerId !== drag.id) return;
    const now = point(event);
    if (!drag.drawing) {
      if (Math.hypot(now.x - drag.x, now.y - drag.y) < MIN_DRAG_PX) return;
      drag.drawing = true;
      frame.setPointerCapture(event.pointerId); // keep the drag when the pointer leaves the photo
    }
    const rect = box(drag, now);
    Object.assign(draft.style, { left: `${rect.x0}px`, top: `${rect.y0}px`, width: `${rect.x1 - rect.x0}px`, height: `${rect.y1 - rect.y0}px` });
    draft.hidden = false;
  });

  const finish = (event, keep) => {
    if (!drag || event.pointerId !== drag.id) return;
    const { drawing } = drag;
    const rect = box(drag, point(event));
    drag = null;
    draft.hidden = true;
    if (!drawing) return; // a tap: the garment box under it handles the click
    swallowClick = true; // the click that ends a drag selects nothing
    setTimeout(() => (swallowClick = false), 0);
    if (!keep) return;
    const [width, height] = imageSize();
    const scaleX = width / frame.clientWidth;
    const scaleY = height / frame.clientHeight;
    const region = [
      Math.max(0, Math.floor(rect.x0 * scaleX)),
      Math.max(0, Math.floor(rect.y0 * scaleY)),
      Math.min(width, Math.ceil(rect.x1 * scaleX)),
      Math.min(height, Math.ceil(rect.y1 * scaleY)),
    ];
    if (region[2] - region[0] < MIN_REGION_PX || region[3] - region[1] < MIN_REGION_PX) onSmall();
    else onRegion(region);
  };
  frame.addEventListener("pointerup", (event) => finish(event, true));
  frame.addEventListener("pointercancel", (event) => finish(event, false));
  frame.addEventListener("click", (event) => {
    if (!swallowClick) return;
    event.stopPropagation();
    event.preventDefault();
  }, true);
  frame.addEventListener("dragstart", (event) => event.preventDefault()); // the photo is not dragged away
}

function box(start, end) {
  return {
    x0: Math.min(start.x, end.x),
    y0: Math.min(start.y, end.y),
    x1: Math.max(start.x, end.x),
    y1: Math.max(start.y, end.y),
  };
}
