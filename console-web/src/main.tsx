import { StrictMode } from "react";
import { createRoot } from "react-dom/client";
import { BrowserRouter } from "react-router-dom";
import { App } from "./App";
import "./styles.css";

// Cytoscape adds a <style> element for its container's `position: relative` unless an element
// with this id exists; the CSP refuses inline styles, so styles.css sets it (`.graph`) instead.
const marker = document.createElement("meta");
marker.id = "__________cytoscape_stylesheet";
document.head.append(marker);

createRoot(document.getElementById("root")!).render(
  <StrictMode>
    <BrowserRouter>
      <App />
    </BrowserRouter>
  </StrictMode>,
);
