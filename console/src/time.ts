// Dates and times as the hospital sees them: Asia/Shanghai, whatever the
// browser's own zone.
const dayFmt = new Intl.DateTimeFormat('sv-SE', { timeZone: 'Asia/Shanghai' })
const minuteFmt = new Intl.DateTimeFormat('sv-SE', {
  timeZone: 'Asia/Shanghai', year: 'numeric', month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit', hour12: false,
})

// today is the date in Shanghai, YYYY-MM-DD.
export function today(): string {
  return dayFmt.format(new Date())
}

// shanghaiNow is the minute in Shanghai, "YYYY-MM-DD HH:mm" (comparable
// with a slot's date and end as text).
export function shanghaiNow(): string {
  return minuteFmt.format(new Date())
}

// newKey is an idempotency key for one submission of a form
// (getRandomValues works on a plain-http intranet, randomUUID does not).
export function newKey(): string {
  const b = crypto.getRandomValues(new Uint8Array(16))
  return Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('')
}
