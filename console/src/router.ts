import { createRouter, createWebHistory, type RouteRecordRaw } from 'vue-router'
import { session } from './session'

// A page needs an action of the server's role table (service/access.go);
// the navigation shows the pages the signed-in member's actions allow, and
// the server still answers 403 to anyone else.
export interface Page {
  path: string
  name: string
  title: string
  icon: string
  action?: string | string[] // none: every staff member; a list: any of them
  component: RouteRecordRaw['component']
}

export const pages: Page[] = [
  { path: '/', name: 'dashboard', title: '工作台', icon: 'Odometer', component: () => import('./views/Dashboard.vue') },
  { path: '/frontdesk', name: 'frontdesk', title: '前台', icon: 'Calendar', action: 'bookings.desk', component: () => import('./views/FrontDesk.vue') },
  { path: '/patients', name: 'patients', title: '患者', icon: 'User', action: 'patients.read', component: () => import('./views/Patients.vue') },
  { path: '/reports', name: 'reports', title: '报告', icon: 'Document', action: ['reports.link', 'reports.clinical'], component: () => import('./views/Reports.vue') },
  { path: '/satisfaction', name: 'satisfaction', title: '满意度与投诉', icon: 'DataLine', action: ['surveys.manage', 'complaints.handle', 'kpi.read'], component: () => import('./views/Satisfaction.vue') },
  { path: '/articles', name: 'articles', title: '自媒体', icon: 'Reading', action: ['articles.manage', 'mass_sends.manage', 'channels.manage'], component: () => import('./views/Articles.vue') },
  { path: '/marketing', name: 'marketing', title: '分群与活动', icon: 'Promotion', action: ['segments.manage', 'campaigns.manage'], component: () => import('./views/Marketing.vue') },
  { path: '/tiers', name: 'tiers', title: '价值分层', icon: 'TrendCharts', action: 'rfm.manage', component: () => import('./views/Tiers.vue') },
  { path: '/inbox', name: 'inbox', title: '医生工作台', icon: 'ChatDotRound', action: 'chat.answer', component: () => import('./views/Inbox.vue') },
  {
    path: '/settings', name: 'settings', title: '设置', icon: 'Setting',
    action: ['packages.manage', 'schedule.manage', 'points.manage', 'oa.manage', 'care_rules.manage', 'chat.settings', 'staff.manage', 'audit.read'],
    component: () => import('./views/Settings.vue'),
  },
]

export const router = createRouter({
  history: createWebHistory(),
  routes: [
    { path: '/login', name: 'login', component: () => import('./views/Login.vue') },
    {
      path: '/',
      component: () => import('./views/Layout.vue'),
      children: pages.map((p) => ({ path: p.path, name: p.name, component: p.component!, meta: { title: p.title, action: p.action } })),
    },
    { path: '/:rest(.*)*', redirect: '/' },
  ],
})

// allowed reports whether the signed-in member may open a page needing action.
export function allowed(action?: string | string[]): boolean {
  if (!action) return true
  const mine = session.staff?.actions ?? []
  return (Array.isArray(action) ? action : [action]).some((a) => mine.includes(a))
}

router.beforeEach((to) => {
  if (to.name !== 'login' && !session.token) return { name: 'login', query: { next: to.fullPath } }
  const action = to.meta.action as string | string[] | undefined
  if (action && session.staff && !allowed(action)) return { name: 'dashboard' }
  document.title = `${(to.meta.title as string) ?? '登录'} · careloop 管理后台`
})
