# Страница проверки, на русском языке.

page-title = Подтвердите право на предложение
heading = Подтвердите право на предложение
intro = У { $brand } есть предложение для групп: { $group }. Введите данные точно так, как они указаны в ваших документах.
language-nav = Язык
choose-legend = К какой группе вы относитесь?
choose-continue = Продолжить
field-given_name = Имя
field-family_name = Фамилия
field-email = Адрес электронной почты
field-license_number = Номер лицензии
field-organization = Учебное заведение, работодатель или организация
field-birth_date = Дата рождения
field-birth_day = День
field-birth_month = Месяц
field-birth_year = Год
hint-birth_date = Например, 27 3 2007
hint-email = Адрес, выданный вашим учебным заведением, работодателем или службой
consent = Я согласен (согласна), чтобы { $brand } сверил(а) эти данные со своими реестрами и подтвердил(а), что я отношусь к этой группе. Данные используются только для этой проверки.
submit = Проверить
required-note = Все поля обязательны.
error-summary-title = Есть ошибки
error-given_name = Введите имя
error-family_name = Введите фамилию
error-email = Введите адрес электронной почты, например name@example.com
error-license_number = Введите номер лицензии
error-organization = Введите учебное заведение, работодателя или организацию
error-birth_date = Введите существующую дату рождения, например 27 3 2007
error-consent = Отметьте флажок, чтобы согласиться на проверку
error-community = Выберите свою группу
error-other = Проверьте это поле
error-prefix = Ошибка:
not-verified-title = Нам не удалось вас проверить
not-verified-body = Убедитесь, что данные совпадают с вашими документами, и попробуйте ещё раз.
attempts-left = { $left ->
    [one] У вас осталась { $left } попытка.
    [few] У вас осталось { $left } попытки.
   *[many] У вас осталось { $left } попыток.
}
exhausted-body = Вы можете вернуться в { $brand } и продолжить без предложения.
verified-title = Проверка пройдена
verified-body = Ваше право подтверждено. Теперь { $brand } может применить предложение.
continue = Перейти в { $brand }
back = Вернуться в { $brand }
expired-title = Срок действия ссылки истёк
expired-body = Вернитесь в { $brand }, чтобы начать заново.
canceled-title = Проверка отменена
canceled-body = Вернитесь в { $brand }, чтобы начать заново.
unknown-title = Ссылка недействительна
unknown-body = Проверьте ссылку или вернитесь в магазин, чтобы начать заново.
rate-limited-title = Слишком много попыток
rate-limited-body = { $minutes ->
    [one] Подождите { $minutes } минуту и попробуйте снова.
    [few] Подождите { $minutes } минуты и попробуйте снова.
   *[many] Подождите { $minutes } минут и попробуйте снова.
}
csrf-title = Не удалось подтвердить запрос
csrf-body = Откройте страницу заново и отправьте форму ещё раз. Для этой страницы должны быть разрешены файлы cookie.
reload = Открыть страницу заново
community-student = студенты
community-teacher = учителя
community-nurse = медсёстры и медбратья
community-military = военнослужащие
community-first_responder = экстренные службы
community-senior = пенсионеры
subsegment-high_school = школьники
subsegment-college = студенты вузов
subsegment-active_duty = действующая служба
subsegment-veteran = ветераны
subsegment-military_family = семьи военнослужащих
subsegment-reservist = резервисты
subsegment-police = полицейские
subsegment-emt = фельдшеры скорой помощи
subsegment-firefighter = пожарные
group-with-subsegment = { $community } ({ $subsegment })
