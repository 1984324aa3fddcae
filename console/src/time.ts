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

const shortFmt = new Intl.DateTimeFormat('zh-CN', { timeZone: 'Asia/Shanghai', month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit', hour12: false })
const longFmt = new Intl.DateTimeFormat('zh-CN', {
  timeZone: 'Asia/Shanghai', year: 'numeric', month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit', second: '2-digit', hour12: false,
})

// clock shows a server time (RFC 3339) as a person in Shanghai reads it:
// 12/08 09:30; empty for none.
export function clock(t?: string | null): string {
  return t ? shortFmt.format(new Date(t)) : ''
}

// fullClock is clock with the year and the seconds (logs, records).
export function fullClock(t?: string | null): string {
  return t ? longFmt.format(new Date(t)) : ''
}
