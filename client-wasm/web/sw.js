// Quibble's service worker: lets the page load while the server is unreachable, so that a
// reload while offline still shows the open room and the unsent messages (which app.js keeps
// in localStorage and sends once the server is back).
//
// Network first: every GET of the page's own files goes to the server as before (it answers
// `no-cache`, so the browser revalidates), and a good answer is copied into the cache. Only
// when the server cannot be reached is the cached copy used. The API, the WebSocket and
// anything on another origin are never touched.

const CACHE = 'quibble-page-v1';
const NOT_CACHED = /^\/(api|ws|healthz|metrics)(\/|$)/;
// What the page needs to start, fetched when the worker installs (the first visit loaded them
// before the worker was there to copy them).
const SHELL = [
  './', 'app.js', 'style.css', 'pkg/quibble_client_wasm.js', 'pkg/quibble_client_wasm_bg.wasm',
];

self.addEventListener('install', (event) => {
  event.waitUntil(caches.open(CACHE).then((cache) => cache.addAll(SHELL)).then(() => self.skipWaiting()));
});
self.addEventListener('activate', (event) => event.waitUntil(self.clients.claim()));

self.addEventListener('fetch', (event) => {
  const { request } = event;
  const url = new URL(request.url);
  if (request.method !== 'GET' || url.origin !== self.location.origin
      || NOT_CACHED.test(url.pathname)) {
    return;
  }
  event.respondWith(networkFirst(request, event));
});

async function networkFirst(request, event) {
  try {
    const response = await fetch(request);
    if (response.ok) {
      const copy = response.clone();
      event.waitUntil(caches.open(CACHE).then((cache) => cache.put(cacheKey(request), copy)));
    }
    return response;
  } catch (error) {
    const cached = await caches.match(cacheKey(request));
    if (cached) return cached;
    throw error;
  }
}

/** The page is one document whatever its query (e.g. `?wtport=`): cache it under its path. */
function cacheKey(request) {
  const url = new URL(request.url);
  url.search = '';
  return url.href;
}
