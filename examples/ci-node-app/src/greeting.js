// The app's logic, kept apart from the server so the build stage can test it.
export function greeting(name, version) {
  const who = typeof name === 'string' && /^[\w .-]{1,40}$/.test(name) ? name : 'world';
  return { message: `Hello, ${who}!`, version };
}
