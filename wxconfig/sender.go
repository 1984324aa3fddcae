package wxconfig

import (
	"context"
	"strconv"

	"github.com/silenceper/wechat/v2/miniprogram/subscribe"
	"github.com/silenceper/wechat/v2/officialaccount/message"
)

// Subscribe sends a mini-program subscribe message and returns its msgid.
func (c *Clients) Subscribe(ctx context.Context, openID, templateID, page string, data map[string]string) (string, error) {
	items := make(map[string]*subscribe.DataItem, len(data))
	for k, v := range data {
		items[k] = &subscribe.DataItem{Value: v}
	}
	msg := &subscribe.Message{ToUser: openID, TemplateID: templateID, Page: page, Data: items, Lang: "zh_CN"}
	var id int64
	err := c.DoMP(ctx, "subscribe send", func(context.Context) error {
		var err error
		id, err = c.MP.GetSubscribe().SendGetMsgID(msg)
		return err
	})
	return strconv.FormatInt(id, 10), err
}

// Template sends an official-account template message that opens the
// mini-program at page; clientMsgID makes a resend harmless (WeChat keeps
// one message per openid and id for ten minutes).
func (c *Clients) Template(ctx context.Context, openID, templateID, clientMsgID, page string, data map[string]string) (string, error) {
	items := make(map[string]*message.TemplateDataItem, len(data))
	for k, v := range data {
		items[k] = &message.TemplateDataItem{Value: v}
	}
	msg := &message.TemplateMessage{ToUser: openID, TemplateID: templateID, Data: items, ClientMsgID: clientMsgID}
	if page != "" {
		msg.MiniProgram.AppID, msg.MiniProgram.PagePath = c.Config.MPAppID, page
	}
	var id int64
	err := c.DoOA(ctx, "template send", func(context.Context) error {
		var err error
		id, err = c.OA.GetTemplate().Send(msg)
		return err
	})
	return strconv.FormatInt(id, 10), err
}

// FollowerUnionID asks WeChat for an official-account follower's unionid.
func (c *Clients) FollowerUnionID(ctx context.Context, openID string) (string, error) {
	var union string
	err := c.DoOA(ctx, "user info", func(context.Context) error {
		info, err := c.OA.GetUser().GetUserInfo(openID)
		if err == nil {
			union = info.UnionID
		}
		return err
	})
	return union, err
}

// PublishMenu replaces the official account's menu and then adds the
// conditional menus (each a JSON object with "button" and "matchrule").
func (c *Clients) PublishMenu(ctx context.Context, menuJSON string, conditional []string) error {
	err := c.DoOA(ctx, "menu create", func(context.Context) error { return c.OA.GetMenu().SetMenuByJSON(menuJSON) })
	if err != nil {
		return err
	}
	for _, cm := range conditional {
		// AddConditionalByJSON, not MatchRule: the SDK's MatchRule sends the old group_id.
		if err := c.DoOA(ctx, "menu addconditional", func(context.Context) error { return c.OA.GetMenu().AddConditionalByJSON(cm) }); err != nil {
			return err
		}
	}
	return nil
}

// Customer sends an official-account customer-service text message (a
// doctor's reply), allowed within 48 hours of the follower's last message.
func (c *Clients) Customer(ctx context.Context, openID, text string) error {
	return c.DoOA(ctx, "custom send", func(context.Context) error {
		return c.OA.GetCustomerMessageManager().Send(message.NewCustomerTextMessage(openID, text))
	})
}
