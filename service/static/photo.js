// The photo with its garment boxes and their labels, shared by the shopper page and the assistant page.
import { el, garmentName } from "./common.js";

/**
 * Draw the photo with one focusable button per garment. Boxes are placed in percent of the upload's
 * size, so they follow the displayed image at any width. `marks` maps garment index -> extra class.
 * Each box's name is a label in its own layer above the boxes, laid out by `placeLabels`.
 */
export function renderPhoto(frame, src, search, selected, onSelect, marks = {}) {
  const [width, height] = search.image_size;
  const image = frame.querySelector("img");
  if (image.getAttribute("src") !== src) image.src = src;
  const layer = frame.querySelector(".boxes");
  const labels = frame.querySelector(".labels") || frame.appendChild(el("div", { class: "labels", "aria-hidden": "true" }));
  layer.replaceChildren();
  labels.replaceChildren();
  const areas = search.garments.map(({ box }) => (box[2] - box[0]) * (box[3] - box[1]));
  const byArea = [...areas].sort((a, b) => b - a);
  search.garments.forEach((garment, index) => {
    const [x0, y0, x1, y1] = garment.box;
    const name = garmentName(search.garments, index);
    const tag = el(
      "span",
      {
        class: `box-label${index === selected ? " selected" : ""}`,
        dataset: { garment: String(index), box: [x0 / width, y0 / height, x1 / width, y1 / height].join(",") },
      },
      name,
    );
    const reveal = (on) => () => tag.classList.toggle("reveal", on); // a folded label, on demand
    const button = el("button", {
      type: "button",
      class: ["box", index === selected ? "selected" : "", marks[index] || ""].join(" ").trim(),
      "aria-pressed": String(index === selected),
      "aria-label": `${name}: show matches${marks[index] ? " (the shopper is looking at this)" : ""}`,
      dataset: { garment: String(index), category: garment.category || "" },
      onclick: (event) => onSelect(index, event),
      onpointerenter: reveal(true),
      onpointerleave: reveal(false),
      onfocus: reveal(true),
      onblur: reveal(false),
    });
    Object.assign(button.style, {
      left: `${(100 * x0) / width}%`,
      top: `${(100 * y0) / height}%`,
      width: `${(100 * (x1 - x0)) / width}%`,
      height: `${(100 * (y1 - y0)) / height}%`,
      zIndex: String(1 + byArea.indexOf(areas[index])), // smaller boxes on top, so each stays tappable
    });
    layer.append(button);
    labels.append(tag);
  });
  if (!followed.has(frame)) {
    followed.add(frame);
    new ResizeObserver(() => placeLabels(frame)).observe(frame);
    image.addEventListener("load", () => placeLabels(frame));
  }
  placeLabels(frame);
}

const followed = new WeakSet(); // frames whose labels are laid out again when the photo changes size
const LABEL_GAP = 2; // px between a box's edge and its label

/**
 * Lay out the garment labels on the displayed photo, whole (never cut short) and never on top of each
 * other: the selected garment's first, then in the detector's order, each just above its box, else just
 * below it, else inside its top edge, at its left or right edge. A label that fits nowhere is folded away
 * and shows while its box is hovered or focused.
 */
export function placeLabels(frame) {
  const width = frame.clientWidth;
  const height = frame.clientHeight;
  if (!width || !height) return; // not shown yet: the photo's load or resize lays them out
  const tags = [...frame.querySelectorAll(".labels .box-label")];
  const ordered = [...tags.filter((tag) => tag.classList.contains("selected")), ...tags.filter((tag) => !tag.classList.contains("selected"))];
  const placed = [];
  for (const tag of ordered) {
    tag.classList.remove("folded");
    const [w, h] = [tag.offsetWidth, tag.offsetHeight];
    const [x0, y0, x1, y1] = tag.dataset.box.split(",").map(Number);
    const box = { left: x0 * width, top: y0 * height, right: x1 * width, bottom: y1 * height };
    const spots = [];
    for (const top of [box.top - h - LABEL_GAP, box.bottom + LABEL_GAP, box.top + LABEL_GAP]) {
      for (const left of [box.left, box.right - w]) {
        if (top >= 0 && top + h <= height) spots.push({ x: Math.max(0, Math.min(left, width - w)), y: top, w, h });
      }
    }
    const free = spots.find((spot) => !placed.some((other) => overlaps(spot, other)));
    const spot = free || spots[0] || { x: Math.max(0, Math.min(box.left, width - w)), y: 0, w, h };
    tag.style.left = `${spot.x}px`;
    tag.style.top = `${spot.y}px`;
    if (free) placed.push(free);
    else tag.classList.add("folded");
  }
}

function overlaps(a, b) {
  return a.x < b.x + b.w + 1 && b.x < a.x + a.w + 1 && a.y < b.y + b.h + 1 && b.y < a.y + a.h + 1;
}
