// The event log's vocabulary, from the server (schema.json): each event
// type under the name of its Go constant, with its payload's members. The
// console names types through it (eventTypes.InvocationQueued.type) and has
// no copy of their strings.

export const eventTypes = {};

// typeOf is the type string of the event type named name
// ("InvocationQueued"), or undefined before the schema is loaded.
export const typeOf = (name) => eventTypes[name] && eventTypes[name].type;

// groupOf is the group an event type is in: the part of its name before
// the first dot.
export const groupOf = (type) => type.split('.')[0];

// loadSchema fetches the schema; the views need it before they show
// events.
export async function loadSchema() {
  const resp = await fetch('schema.json', { cache: 'no-store' });
  if (!resp.ok) throw new Error(`schema.json: ${resp.status}`);
  Object.assign(eventTypes, (await resp.json()).events);
}
