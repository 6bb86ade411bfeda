// The API reference page: Swagger UI on the OpenAPI document the gateway
// serves (docs/openapi/uba.openapi.json, generated from proto/).
"use strict";

window.addEventListener("DOMContentLoaded", () => {
  window.ui = window.SwaggerUIBundle({
    url: "/api/behavior-analytics/openapi.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    // The default sends the document's address to a validator on the
    // internet for a badge: the page talks to its own gateway only.
    validatorUrl: null,
    // "Try it out" calls the API with the key given under "Authorize"
    // (`Bearer <key>`); the key stays in this page's memory.
    persistAuthorization: false,
    docExpansion: "list",
  });
});
