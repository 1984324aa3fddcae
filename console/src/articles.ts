// Names staff read for self-media's codes.
export const categories: Record<string, string> = { science: '健康科普', guide: '体检须知', news: '医院动态', activity: '活动' }

export const articleStatus: Record<string, string> = { draft: '草稿', submitted: '已提交', publishing: '发布中', published: '已发布', failed: '发布失败' }
export const articleStatusType: Record<string, 'info' | 'primary' | 'success' | 'danger' | 'warning'> = {
  draft: 'info', submitted: 'warning', publishing: 'warning', published: 'success', failed: 'danger',
}

export const massStatus: Record<string, string> = { queued: '排队中', sending: '发送中', done: '已完成', failed: '失败' }
export const massTarget: Record<string, string> = { all: '全部关注者', tag: '标签', patients: '指定患者' }
